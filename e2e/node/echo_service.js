'use strict';
// The service the gRPC end-to-end tests call, written out for grpc-js
// without a .proto file: sightline.e2e.Echo, whose messages are all
// google.protobuf.BytesValue (field 1, bytes), encoded here by hand so
// that the only dependency is @grpc/grpc-js. The Go side uses
// wrapperspb.BytesValue and the same method names.
//
//   Unary(BytesValue) returns (BytesValue): the request's bytes, echoed.
//   Stream(BytesValue) returns (stream BytesValue): the request's value
//     is "COUNT SIZE" in ASCII; the answer is COUNT messages of SIZE
//     bytes, message i's byte j being pattern(i, j).
//   DieAfterFirst(BytesValue) returns (stream BytesValue): response
//     headers and one message of the request's bytes, then nothing: the
//     tests kill the server, or cut its connection, at that point.

function encodeBytesValue(value) {
  const v = Buffer.from(value);
  if (v.length === 0) return Buffer.alloc(0); // proto3 omits a default
  const len = [];
  for (let n = v.length; ; n = Math.floor(n / 128)) {
    if (n < 128) {
      len.push(n);
      break;
    }
    len.push((n % 128) | 128);
  }
  return Buffer.concat([Buffer.from([0x0a, ...len]), v]);
}

function decodeBytesValue(buf) {
  let value = Buffer.alloc(0);
  let i = 0;
  const varint = () => {
    let n = 0;
    for (let mul = 1; ; mul *= 128) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++];
      n += (b & 127) * mul;
      if (b < 128) return n;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const wire = key & 7;
    if (wire === 2) {
      const n = varint();
      if (i + n > buf.length) throw new Error('truncated field');
      if (key >>> 3 === 1) value = buf.subarray(i, i + n);
      i += n;
    } else if (wire === 0) {
      varint();
    } else {
      throw new Error(`unexpected wire type ${wire}`);
    }
  }
  return value;
}

// pattern(i, j) is byte j of message i of a Stream answer.
function pattern(i, j) {
  return (i * 31 + j) % 251;
}

function patterned(i, size) {
  const b = Buffer.allocUnsafe(size);
  for (let j = 0; j < size; j++) b[j] = pattern(i, j);
  return b;
}

function method(name, responseStream) {
  return {
    path: `/sightline.e2e.Echo/${name}`,
    requestStream: false,
    responseStream,
    requestSerialize: encodeBytesValue,
    requestDeserialize: decodeBytesValue,
    responseSerialize: encodeBytesValue,
    responseDeserialize: decodeBytesValue,
    originalName: name,
  };
}

const EchoService = {
  Unary: method('Unary', false),
  Stream: method('Stream', true),
  DieAfterFirst: method('DieAfterFirst', true),
};

module.exports = { EchoService, patterned };
