// Server-Sent Events over fetch(): EventSource can only GET, the analysis endpoint is a POST.
// Parses the text/event-stream format (WHATWG HTML §9.2.6): "data:" lines joined by "\n", a blank line
// dispatches the event, lines starting with ":" are comments (the server's keep-alives).

/** Yield the data string of every event in a streamed Response body. */
export async function* sseMessages(response, signal) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let data = [];
  const onAbort = () => reader.cancel().catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, cut);
        buffer = buffer.slice(cut + (buffer.startsWith("\r\n", cut) ? 2 : 1));
        if (line === "") {
          if (data.length) yield data.join("\n");
          data = [];
        } else if (line.startsWith(":")) {
          continue; // comment (keep-alive)
        } else {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? "" : line.slice(colon + 1);
          if (val.startsWith(" ")) val = val.slice(1);
          if (field === "data") data.push(val);
        }
      }
    }
    if (data.length) yield data.join("\n");
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}

/** Parsed JSON events of a stream (the contract: started, completed/error per model, finished). */
export async function* analysisEvents(response, signal) {
  for await (const text of sseMessages(response, signal)) {
    yield JSON.parse(text);
  }
}
