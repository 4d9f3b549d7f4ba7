// Drives the emulator through the official Node.js SDKs: one JSON call per stdin line, one
// JSON reply per stdout line ({"ok": Response} or {"error": {code, message, requestId}}).
// A call names its client ("tiw": tencentcloud-sdk-nodejs's typed TIW client; "common": the
// generic CommonClient of tencentcloud-sdk-nodejs-common), endpoint, credentials, signMethod
// ("TC3-HMAC-SHA256", "HmacSHA1", "HmacSHA256") and reqMethod ("POST", "GET").
"use strict";
const readline = require("readline");
const { tiw } = require("tencentcloud-sdk-nodejs/tencentcloud/services/tiw");
const { CommonClient } = require("tencentcloud-sdk-nodejs-common");

function makeClient(call) {
  const config = {
    credential: { secretId: call.secretId, secretKey: call.secretKey },
    region: call.region === undefined ? "ap-guangzhou" : call.region,
    profile: {
      signMethod: call.signMethod || "TC3-HMAC-SHA256",
      httpProfile: {
        endpoint: call.endpoint, // host:port, as the SDK documents it
        protocol: "http://",
        reqMethod: call.reqMethod || "POST",
        reqTimeout: 30,
      },
    },
  };
  if (call.client === "common") {
    return new CommonClient("tiw.tencentcloudapi.com", "2019-09-19", config);
  }
  return new tiw.v20190919.Client(config);
}

async function run(call) {
  const client = makeClient(call);
  if (call.client === "common") {
    return client.request(call.action, call.params);
  }
  return client[call.action](call.params);
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const call = JSON.parse(line);
  let reply;
  try {
    reply = { ok: await run(call) };
  } catch (e) {
    reply = { error: { code: e.code || null, message: e.message, requestId: e.requestId || null } };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
});
