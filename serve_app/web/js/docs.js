// /docs: a small renderer for this server's own OpenAPI 3.1 document (paths, parameters, responses, the
// event schemas and every model's results schema). No third-party UI: the document's shapes are known.

import { h } from "./dom.js";

const doc = document.getElementById("doc");
const tocList = document.getElementById("toc-list");
const SCHEMA_REF = "#/components/schemas/";

let spec = null; // the OpenAPI document

/** Inline `code` and paragraphs from the descriptions (the only markdown the document uses). */
function prose(text) {
  if (!text) return [];
  return String(text)
    .split(/\n\s*\n/)
    .map((para) => h("p", {}, para.split(/(`[^`]+`)/).map((part) => (part.startsWith("`") && part.endsWith("`") && part.length > 1 ? h("code", { text: part.slice(1, -1) }) : part))));
}

const anchor = (name) => `schema-${name}`;

function refName(ref) {
  return ref.startsWith(SCHEMA_REF) ? ref.slice(SCHEMA_REF.length).split("/")[0] : ref;
}

/** A schema's type as short text/links: "string (enum)", "array of number", a link to a component. */
function typeOf(schema) {
  if (!schema || typeof schema !== "object") return [h("span", { class: "type", text: "any" })];
  if (schema.$ref) {
    const name = refName(schema.$ref);
    return [h("a", { class: "type", href: `#${anchor(name)}`, text: name })];
  }
  if ("const" in schema) return [h("span", { class: "type", text: JSON.stringify(schema.const) })];
  if (schema.oneOf || schema.anyOf) {
    const alts = schema.oneOf || schema.anyOf;
    return alts.flatMap((alt, i) => [i ? " | " : "", ...typeOf(alt)]);
  }
  let t = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || (schema.properties ? "object" : "any");
  if (t === "array" || (Array.isArray(schema.type) && schema.type.includes("array"))) {
    return [h("span", { class: "type", text: "array of " }), ...typeOf(schema.items)];
  }
  if (schema.format) t += ` (${schema.format})`;
  return [h("span", { class: "type", text: t })];
}

function constraints(schema) {
  const bits = [];
  if (Array.isArray(schema.enum)) bits.push(h("div", { class: "enum", text: `one of: ${schema.enum.map((v) => JSON.stringify(v)).join(", ")}` }));
  for (const k of ["minimum", "maximum", "minItems", "maxItems", "minLength", "pattern"]) {
    if (k in schema) bits.push(h("div", { class: "enum", text: `${k}: ${schema[k]}` }));
  }
  return bits;
}

/** Properties of an object schema as a table; nested objects and arrays of objects recurse (bounded). */
function propsTable(schema, depth = 0) {
  const props = schema.properties || {};
  const required = new Set(schema.required || []);
  const names = Object.keys(props);
  if (!names.length) {
    const extra = schema.additionalProperties;
    if (extra && typeof extra === "object") return h("p", {}, ["An object whose values are ", ...typeOf(extra), "."]);
    return null;
  }
  const rows = names.map((name) => {
    const p = props[name] || {};
    const nestedSchema = p.type === "object" && p.properties ? p : p.type === "array" && p.items && p.items.properties ? p.items : null;
    return h("tr", {}, [
      h("td", {}, [name, required.has(name) ? h("span", { class: "req", text: "required" }) : null]),
      h("td", {}, typeOf(p)),
      h("td", {}, [...prose(p.description), ...constraints(p), nestedSchema && depth < 3 ? h("div", { class: "nested" }, [propsTable(nestedSchema, depth + 1)]) : null]),
    ]);
  });
  return h("table", { class: "props" }, [h("thead", {}, [h("tr", {}, [h("th", { text: "field" }), h("th", { text: "type" }), h("th", { text: "description" })])]), h("tbody", {}, rows)]);
}

function schemaSection(name, schema) {
  const parts = [h("h3", { text: schema.title || name }), ...prose(schema.title ? schema.description : schema.description)];
  if (schema.oneOf && !schema.properties) parts.push(h("p", {}, ["One of: ", ...typeOf(schema)]));
  const table = propsTable(schema);
  if (table) parts.push(table);
  if (schema.oneOf && schema.properties) {
    parts.push(h("p", { class: "hint", text: `${schema.oneOf.length} variants tie each model name/version to its results schema:` }));
    parts.push(h("p", {}, schema.oneOf.flatMap((alt, i) => [i ? ", " : "", ...typeOf(alt.properties?.results || {})])));
  }
  return h("section", { class: "schema", id: anchor(name) }, parts);
}

function parameterTable(params) {
  return h("table", { class: "props" }, [
    h("thead", {}, [h("tr", {}, ["name", "in", "type", "description"].map((t) => h("th", { text: t })))]),
    h(
      "tbody",
      {},
      params.map((p) =>
        h("tr", {}, [
          h("td", {}, [p.name, p.required ? h("span", { class: "req", text: "required" }) : null]),
          h("td", { text: p.in }),
          h("td", {}, typeOf(p.schema)),
          h("td", {}, [...prose(p.description), p.example !== undefined ? h("div", { class: "enum" }, ["example: ", h("code", { text: String(p.example) })]) : null]),
        ])
      )
    ),
  ]);
}

function operationSection(path, method, op) {
  const id = `op-${op.operationId || method + path}`;
  const parts = [h("h3", {}, [h("span", { class: `method ${method}`, text: method }), h("span", { class: "path", text: path }), h("span", { class: "summary-text", text: op.summary || "" })]), ...prose(op.description)];
  if (op.parameters?.length) parts.push(h("h4", { text: "Parameters" }), parameterTable(op.parameters));
  const optionalAuth = (op.security || []).some((req) => Object.keys(req).length === 0);
  const schemes = (op.security || []).flatMap((req) => Object.keys(req));
  if (schemes.length) {
    parts.push(h("h4", { text: "Authorization" }), h("p", {}, [h("code", { text: "Authorization: Bearer <key>" }), optionalAuth ? " — only when the server has API keys configured." : " — required."]));
  }
  if (op.requestBody) {
    parts.push(h("h4", { text: "Request body" }), ...prose(op.requestBody.description), h("p", {}, ["Content types: ", ...Object.keys(op.requestBody.content || {}).flatMap((c, i) => [i ? ", " : "", h("code", { text: c })])]));
  }
  const rows = Object.entries(op.responses || {}).map(([code, resp]) =>
    h("tr", {}, [
      h("td", {}, [h("span", { class: `status-code ${code < 400 ? "ok" : "err"}`, text: code })]),
      h("td", {}, [...prose(resp.description), resp.headers ? h("div", { class: "enum", text: `headers: ${Object.keys(resp.headers).join(", ")}` }) : null]),
      h("td", {}, Object.entries(resp.content || {}).flatMap(([type, media], i) => [i ? h("br") : null, h("code", { text: type }), " ", ...(media.schema && Object.keys(media.schema).length ? ["→ ", ...typeOf(media.schema)] : [])])),
    ])
  );
  parts.push(h("h4", { text: "Responses" }), h("table", { class: "props" }, [h("thead", {}, [h("tr", {}, ["status", "meaning", "body"].map((t) => h("th", { text: t })))]), h("tbody", {}, rows)]));
  for (const resp of Object.values(op.responses || {})) {
    for (const [type, media] of Object.entries(resp.content || {})) {
      if (media.example !== undefined) parts.push(h("h4", { text: `Example (${type})` }), h("pre", {}, [h("code", { text: typeof media.example === "string" ? media.example : JSON.stringify(media.example, null, 2) })]));
    }
  }
  return h("section", { class: "op", id }, parts);
}

function tocGroup(title, items) {
  return [h("h2", { text: title }), h("ul", {}, items.map(([href, text]) => h("li", {}, [h("a", { href, text, title: text })])))];
}

function render() {
  const ops = [];
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const [method, op] of Object.entries(item)) ops.push({ path, method, op });
  }
  const schemas = spec.components?.schemas || {};
  const results = Object.keys(schemas).filter((n) => n.startsWith("result_"));
  const others = Object.keys(schemas).filter((n) => !n.startsWith("result_"));
  const events = others.filter((n) => /Event$|^ModelResult$/.test(n));
  const rest = others.filter((n) => !events.includes(n));

  doc.replaceChildren(
    h("h1", { text: `${spec.info.title} ${spec.info.version}` }),
    h("p", { class: "summary-text", text: spec.info.summary || "" }),
    ...prose(spec.info.description),
    h("h2", { id: "endpoints", text: "Endpoints" }),
    ...ops.map(({ path, method, op }) => operationSection(path, method, op)),
    h("h2", { id: "events", text: "Stream events" }),
    ...prose("Each SSE message of `POST /v1/analysis/stream` carries one of these objects as its `data`."),
    ...events.map((n) => schemaSection(n, schemas[n])),
    h("h2", { id: "results", text: "Model results" }),
    ...prose("The `results` object of each model's `completed` event (from the registry's output_schema)."),
    ...results.map((n) => schemaSection(n, schemas[n])),
    h("h2", { id: "other", text: "Other schemas" }),
    ...rest.map((n) => schemaSection(n, schemas[n]))
  );
  doc.setAttribute("aria-busy", "false");
  tocList.replaceChildren(
    ...tocGroup(
      "Endpoints",
      ops.map(({ path, method, op }) => [`#op-${op.operationId || method + path}`, `${method.toUpperCase()} ${path}`])
    ),
    ...tocGroup("Stream events", events.map((n) => [`#${anchor(n)}`, n])),
    ...tocGroup("Model results", results.map((n) => [`#${anchor(n)}`, schemas[n].title?.replace(/ results$/, "") || n])),
    ...tocGroup("Other schemas", rest.map((n) => [`#${anchor(n)}`, n]))
  );
  if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
}

document.getElementById("toc-filter").addEventListener("input", (e) => {
  const q = e.target.value.trim().toLowerCase();
  for (const li of tocList.querySelectorAll("li")) li.hidden = q && !li.textContent.toLowerCase().includes(q);
});

fetch("/openapi.json")
  .then((r) => {
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return r.json();
  })
  .then((json) => {
    spec = json;
    render();
  })
  .catch((err) => {
    doc.replaceChildren(h("p", { class: "error-text", text: `Cannot load /openapi.json: ${err.message}` }));
  });

