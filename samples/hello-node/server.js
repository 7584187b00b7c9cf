// A tiny HTTP server for paas: no dependencies, listens on $PORT.
const http = require("node:http");

const port = Number(process.env.PORT || 8080);
const host = process.env.HOST; // the runtime sets 127.0.0.1; unset: every address
const greeting = process.env.GREETING || "Hello";

const server = http.createServer((req, res) => {
  if (req.url === "/" || req.url.startsWith("/?")) {
    res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
    res.end(`${greeting} from paas (node ${process.version})!\n`);
    return;
  }
  res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" });
  res.end("not found\n");
});

server.listen(port, host, () => console.log(`listening on ${host || "*"}:${port}`));

// Stop accepting on SIGTERM and exit once open connections are done.
process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
