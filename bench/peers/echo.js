// The seed's node.js echo: a plain net.createServer whose 'data' handler writes the chunk back.
// Usage: node echo.js PORT [HOST]
'use strict';
const net = require('net');

const port = Number(process.argv[2]);
const host = process.argv[3] || '127.0.0.1';

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('data', (data) => socket.write(data));
  // A client that resets its connection must not take the server down.
  socket.on('error', () => socket.destroy());
});
server.listen({ port, host, backlog: 4096 }, () => {
  process.stderr.write(`node echo listening on ${host}:${port}\n`);
});
