'use strict';
// paas-runtime's handoff adapter for Node.js (see paas_runtime/handoff.py).
//
// Loaded into every node process of an instance with NODE_OPTIONS=--require
// (npm's own process too, where it stays idle). When a server starts listening
// on $PORT, the adapter opens a second listener on the public port's slot
// (the inherited PAAS_LISTEN_FD) and hands its connections to that server, so
// the app needs no change. From "retire" on it forwards each later request on a kept-alive connection to the
// public port (the new revision), answering with "Connection: close": no
// client sees the old revision after the switch, and no connection a client
// may be reusing is closed under it.

const listenFd = Number(process.env.PAAS_LISTEN_FD);
const controlFd = Number(process.env.PAAS_CONTROL_FD);
const privatePort = Number(process.env.PORT);
const publicPort = Number(process.env.PAAS_PUBLIC_PORT);
const publicHost = process.env.PAAS_PUBLIC_HOST || '127.0.0.1';

// The instance's private $PORT is the supervisor's, never the network's: a server
// that listens on it without an address (Node's default: every interface) or on a
// wildcard listens on loopback instead.
const EVERY_ADDRESS = new Set(['0.0.0.0', '::', '[::]', '']);
const onLoopback = (args) => {
  const [first, second] = args;
  if (first !== null && typeof first === 'object') {
    const wildcard = first.host == null || EVERY_ADDRESS.has(first.host);
    return Number(first.port) === privatePort && wildcard && first.path == null
      ? [{ ...first, host: '127.0.0.1' }, ...args.slice(1)]
      : args;
  }
  if (Number(first) !== privatePort || typeof first === 'function') return args;
  if (typeof second === 'string') return EVERY_ADDRESS.has(second) ? [first, '127.0.0.1', ...args.slice(2)] : args;
  return [first, '127.0.0.1', ...args.slice(1)];
};
if (privatePort > 0 && publicPort > 0) {
  const net = require('node:net');
  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function (...args) {
    return listen.apply(this, onLoopback(args));
  };
}

const isSocket = (fd) => {
  try {
    // bigint: a plain fstat would leave a socket's mode in the array fs.realpathSync
    // reads for path components it has cached, and Node would then stop resolving
    // the app's main module at the first cached component (a symlinked bin in
    // node_modules/.bin would not be followed).
    return require('node:fs').fstatSync(fd, { bigint: true }).isSocket();
  } catch {
    return false;
  }
};

if (listenFd > 2 && controlFd > 2 && privatePort > 0 && publicPort > 0 && isSocket(listenFd) && isSocket(controlFd)) {
  const net = require('node:net');
  const http = require('node:http');
  const childProcess = require('node:child_process');
  let taken = false;

  // npm, like most launchers, starts the app with only stdin/out/err open:
  // until this process has taken the port, its children get both descriptors
  // under the same numbers, so the adapter in the app's process finds them.
  const spawn = childProcess.ChildProcess.prototype.spawn;
  childProcess.ChildProcess.prototype.spawn = function (options) {
    return spawn.call(this, taken ? options : withOurFds(options));
  };
  const withOurFds = (options) => {
    const given = options.stdio;
    const stdio = typeof given === 'string' ? [given, given, given] : Array.isArray(given) ? [...given] : ['pipe', 'pipe', 'pipe'];
    for (const fd of [listenFd, controlFd]) {
      while (stdio.length <= fd) stdio.push('ignore');
      if (stdio[fd] === 'ignore' || stdio[fd] == null) stdio[fd] = fd;
    }
    return { ...options, stdio };
  };

  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function (...args) {
    const result = listen.apply(this, args);
    if (!taken && portOf(args[0]) === privatePort) {
      taken = true;
      try {
        take(this);
      } catch (error) {
        // The app must run whatever happens here; the supervisor then proxies it.
        console.error(`paas-runtime handoff: ${error.message}`);
      }
    }
    return result;
  };

  const portOf = (first) => Number(first !== null && typeof first === 'object' ? first.port : first);

  // Hop-by-hop headers: they describe one connection, not the request.
  const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);
  const endToEnd = (headers) => Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_BY_HOP.has(name)));

  // Marks a forwarded request, so that it is never forwarded twice (should the port
  // still lead back here) and the app never sees the mark.
  const FORWARDED = 'x-paas-runtime-forwarded';
  const forward = (req, res) => {
    const headers = { ...endToEnd(req.headers), [FORWARDED]: '1' };
    const upstream = http.request(
      { host: publicHost, port: publicPort, method: req.method, path: req.url, headers, agent: false },
      (answer) => {
        res.writeHead(answer.statusCode, answer.statusMessage, { ...endToEnd(answer.headers), connection: 'close' });
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  };

  const take = (server) => {
    const control = new net.Socket({ fd: controlFd, readable: true, writable: true });
    control.on('error', () => {});
    control.unref();
    const tell = (line) => control.write(`${line}\n`);

    let retired = false;
    const slot = net.createServer((socket) => server.emit('connection', socket));
    slot.on('error', (error) => tell(`declined cannot use the public port's socket: ${error.message}`));
    slot.listen({ fd: listenFd }, () => tell('listening'));
    slot.unref();

    if (server instanceof http.Server) {
      const emit = server.emit;
      server.emit = function (event, ...args) {
        if (event === 'request') {
          const headers = args[0].headers;
          if (headers[FORWARDED] !== undefined) {
            delete headers[FORWARDED];
          } else if (retired) {
            forward(...args);
            return true;
          }
        }
        return emit.call(this, event, ...args);
      };
    }

    control.on('data', (data) => {
      if (String(data).includes('retire')) retired = true;
    });
  };
}
