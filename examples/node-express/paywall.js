'use strict';
// x402 paywall for Express routes, backed by the paysidecar gRPC API
// (protos/paysidecar/v1/payment.proto, loaded as is: no generated code).
//
// For a paid route: Authorize → (402 / rejection sent exactly as the sidecar
// built it) → the route handler, whose answer is held back → Settle only for a
// 2xx non-HEAD answer while the client is still there → the content with the
// sidecar's PAYMENT-RESPONSE header. Anything else releases the claim and lets
// the handler's own answer through. Sidecar unreachable → 503, never content.

const path = require('node:path');
const { randomUUID } = require('node:crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PAYMENT_PROTO = path.join(__dirname, '..', '..', 'protos', 'paysidecar', 'v1', 'payment.proto');
const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;
const PAID_CACHE_CONTROL = 'private, no-store';
const CALL_TIMEOUT_MS = 10_000;
// Settle gets longer: the sidecar may retry an ambiguous settle and ask the
// chain before it answers, and a deadline cut short refuses a paid answer.
const SETTLE_TIMEOUT_MS = 60_000;

// One channel to the sidecar for the whole process.
function connectSidecar(target, { token } = {}) {
  const definition = protoLoader.loadSync(PAYMENT_PROTO, {
    keepCase: true, // field names as in the .proto: payment_signature, tracking_id, ...
    defaults: true,
    oneofs: true, // AuthorizeResponse.outcome names the branch that is set
    longs: String,
  });
  const { PaymentService } = grpc.loadPackageDefinition(definition).paysidecar.v1;
  const client = new PaymentService(target, grpc.credentials.createInsecure());

  function call(method, request, timeoutMs = CALL_TIMEOUT_MS) {
    const metadata = new grpc.Metadata();
    metadata.set('x-request-id', request.request_id);
    if (token) metadata.set('authorization', `Bearer ${token}`);
    return new Promise((resolve, reject) => {
      client[method](request, metadata, { deadline: Date.now() + timeoutMs }, (error, answer) =>
        error ? reject(error) : resolve(answer),
      );
    });
  }
  return { call, close: () => client.close() };
}

// Every response write goes through res.writeHead / write / end: keep them back
// until the payment is settled. Resolves with the body when the handler ends.
function holdResponse(res) {
  const original = { writeHead: res.writeHead, write: res.write, end: res.end };
  const chunks = [];
  const keep = (chunk, encoding) => {
    if (chunk != null && chunk.length !== 0) {
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8'));
    }
  };
  return new Promise((resolve) => {
    res.writeHead = (status, reason, fields) => {
      res.statusCode = status;
      const given = typeof reason === 'string' ? fields : reason;
      if (Array.isArray(given)) {
        for (let i = 0; i < given.length; i += 2) res.setHeader(given[i], given[i + 1]); // [name, value, name, value, ...]
      } else {
        for (const [name, value] of Object.entries(given ?? {})) res.setHeader(name, value);
      }
      return res;
    };
    res.write = (chunk, encoding, done) => {
      keep(chunk, encoding);
      const callback = [encoding, done].find((f) => typeof f === 'function');
      if (callback) process.nextTick(callback);
      return true;
    };
    res.end = (chunk, encoding, done) => {
      if (typeof chunk !== 'function') keep(chunk, encoding);
      const callback = [chunk, encoding, done].find((f) => typeof f === 'function');
      if (callback) res.once('finish', callback);
      Object.assign(res, original);
      resolve(Buffer.concat(chunks));
      return res;
    };
  });
}

// Replace whatever the handler set with an answer the sidecar (or we) built.
function sendAnswer(res, requestId, { status, headers = {}, body = '' } = {}) {
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  res.setHeader('X-Request-ID', requestId);
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  if (!res.hasHeader('Content-Type')) res.setHeader('Content-Type', 'application/json');
  // A missing status must still refuse the content: 402 is the safe reading.
  res.status(status || 402).end(Buffer.from(body));
}

function sendError(res, requestId, code, message, retryAfter) {
  const body = JSON.stringify({ error: { code, message, request_id: requestId } });
  const headers = { 'Content-Type': 'application/json; charset=utf-8', 'Retry-After': String(retryAfter) };
  sendAnswer(res, requestId, { status: 503, headers, body });
}

// Authorize failed: no settle was sent, so nothing was charged.
function serviceUnavailable(res, requestId) {
  const message = 'The payment service is unavailable; no content was served and nothing was charged. Retry later.';
  sendError(res, requestId, 'payment_service_unavailable', message, 1);
}

// Settle failed (sidecar gone, deadline, lost answer): it may have moved the money,
// so never "nothing was charged". The same header, retried, is redeemed once if paid.
function paymentInDoubt(res, requestId) {
  sendError(res, requestId, 'payment_in_doubt', 'the payment is being checked; retry with the same payment header', 5);
}

// A HEAD is never settled: its answer keeps no header that depends on the data
// (Content-Length, ETag, counts, links), or one payment would answer any number
// of questions about it. Only the Content-Type stays.
function sendHead(res, requestId) {
  const contentType = res.getHeader('Content-Type');
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  res.setHeader('X-Request-ID', requestId);
  if (contentType !== undefined) res.setHeader('Content-Type', contentType);
  res.setHeader('Cache-Control', PAID_CACHE_CONTROL);
  res.end();
}

// Resolves true once the whole answer is handed to the OS, false if the connection closed first.
function delivered(res) {
  return new Promise((resolve) => {
    res.once('finish', () => resolve(true));
    res.once('close', () => resolve(res.writableFinished));
  });
}

function flatHeaders(req) {
  return Object.fromEntries(Object.entries(req.headers).map(([name, value]) => [name, [value].flat().join(', ')]));
}

// Express middleware charging `route` ({key, name, description, mime_type, ...}: payment.proto's Route;
// `name` is a route of the sidecar's config, which holds its price and payTo).
function paywall(sidecar, route) {
  return async function x402(req, res, next) {
    const offered = req.get('X-Request-ID');
    const requestId = offered && REQUEST_ID.test(offered) ? offered : randomUUID();
    res.setHeader('X-Request-ID', requestId);
    const query = req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1) : '';

    // Sent to Authorize, and again with Settle: then any replica of a pool of
    // sidecars can settle the payment, not only the one that verified it.
    const payment = { payment_signature: req.get('PAYMENT-SIGNATURE') ?? '', x_payment: req.get('X-PAYMENT') ?? '' };
    let authorized;
    try {
      authorized = await sidecar.call('Authorize', {
        request_id: requestId,
        method: req.method,
        url: `${req.protocol}://${req.get('Host')}${req.originalUrl}`, // the payment is bound to it
        route,
        ...payment,
        client_ip: req.socket.remoteAddress ?? '',
        user_agent: req.get('User-Agent') ?? '',
        headers: flatHeaders(req),
        query,
      });
    } catch (error) {
      console.error(`authorize failed for request ${requestId}: ${error.message}`);
      return serviceUnavailable(res, requestId);
    }
    // completed: a payment operation the sidecar carried out itself (a channel
    // refund); like a 402 or a rejection it is sent as it is, and no handler runs.
    if (['payment_required', 'rejected', 'completed'].includes(authorized.outcome)) {
      return sendAnswer(res, requestId, authorized[authorized.outcome]);
    }
    if (authorized.outcome !== 'verified') return serviceUnavailable(res, requestId);

    // The claim token proves we hold the claim: Settle and Release need it, and
    // it never goes to the client.
    const { payment_id, claim_token } = authorized.verified;
    const claim = { payment_id, claim_token, tracking_id: authorized.tracking_id, request_id: requestId };
    const started = Date.now();
    // The connection closed under the response (client gone) before it was sent.
    const clientGone = () => res.destroyed && !res.writableFinished;
    const release = async (reason) => {
      const request = { ...claim, reason, response_status: res.statusCode, response_time_ms: Date.now() - started };
      // Logged, never thrown: the sidecar recovers claims left unsettled.
      await sidecar.call('Release', request).catch((error) => console.error(`release (${reason}) failed for request ${requestId}: ${error.message}`));
    };

    const held = holdResponse(res);
    next();
    const body = await held;

    const status = res.statusCode;
    const reason =
      status < 200 || status >= 300 ? `handler_status_${status}` : req.method === 'HEAD' ? 'head_request' : clientGone() ? 'client_gone' : null;
    if (reason === 'head_request') {
      await release(reason);
      return sendHead(res, requestId);
    }
    if (reason) {
      await release(reason);
      return res.end(body);
    }

    let settled;
    try {
      const request = { ...claim, ...payment, response_status: status, response_time_ms: Date.now() - started };
      settled = await sidecar.call('Settle', request, SETTLE_TIMEOUT_MS);
    } catch (error) {
      console.error(`settle failed for request ${requestId}: ${error.message}`);
      // The sidecar may or may not have settled: it releases, or keeps the
      // settled payment redeemable by the same payment header.
      await release('response_not_delivered');
      return paymentInDoubt(res, requestId);
    }
    if (!settled.success) return sendAnswer(res, requestId, settled.answer);

    for (const [name, value] of Object.entries(settled.headers)) res.setHeader(name, value);
    res.setHeader('Cache-Control', PAID_CACHE_CONTROL);
    if (clientGone()) return release('response_not_delivered');
    const sent = delivered(res);
    res.end(body);
    if (!(await sent)) await release('response_not_delivered');
  };
}

module.exports = { connectSidecar, paywall };
