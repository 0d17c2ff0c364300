'use strict';
// A @grpc/grpc-js server of sightline.e2e.Echo (see echo_service.js) on
// 127.0.0.1, plaintext. Prints "listening PORT" once it serves, and
// "sent-first" when a DieAfterFirst call's first message has been written.
//
// Usage: node grpc_server.js [port]   (0 or nothing: any free port)
const grpc = require('@grpc/grpc-js');
const { EchoService, patterned } = require('./echo_service');

const server = new grpc.Server();
server.addService(EchoService, {
  Unary(call, callback) {
    callback(null, call.request);
  },
  Stream(call) {
    const [count, size] = call.request.toString('ascii').split(' ').map(Number);
    let i = 0;
    // Honours backpressure so that the client's flow control is felt.
    const pump = () => {
      while (i < count) {
        if (!call.write(patterned(i++, size))) {
          call.once('drain', pump);
          return;
        }
      }
      call.end();
    };
    pump();
  },
  DieAfterFirst(call) {
    call.sendMetadata(new grpc.Metadata());
    call.write(call.request, () => console.log('sent-first'));
    // Never ends: the test kills this process.
  },
});
server.bindAsync(`127.0.0.1:${Number(process.argv[2] || 0)}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    console.error(err.message);
    process.exit(1);
  }
  console.log(`listening ${port}`);
});
