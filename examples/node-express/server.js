'use strict';
// An Express service that charges for GET /weather through the paysidecar.
//
//   SIDECAR_TARGET=127.0.0.1:50051 ROUTE=weather PORT=8080 node server.js
//
// ROUTE names a route of the sidecar's config (PAYSIDECAR_ROUTES), where its price,
// payTo, network and asset live; empty, the sidecar's default route. SIDECAR_TOKEN is
// the sidecar's bearer token. PRICE, PAY_TO and NETWORK (CAIP-2, e.g. eip155:84532)
// override the route's terms while you try things out: a production sidecar refuses
// them (the request is then answered 503, nothing served).

const express = require('express');
const { connectSidecar, paywall } = require('./paywall');

const WEATHER = {
  oslo: { temperature_c: 4, conditions: 'rain' },
  lima: { temperature_c: 19, conditions: 'overcast' },
  tokyo: { temperature_c: 22, conditions: 'clear' },
};

const env = process.env;
const sidecar = connectSidecar(env.SIDECAR_TARGET ?? '127.0.0.1:50051', { token: env.SIDECAR_TOKEN });
const weatherRoute = {
  key: 'GET /weather',
  name: env.ROUTE ?? '',
  price: env.PRICE ?? '',
  pay_to: env.PAY_TO ?? '',
  network: env.NETWORK ?? '',
  description: 'Current weather for a city',
  mime_type: 'application/json',
};

const app = express();
app.get('/weather', paywall(sidecar, weatherRoute), (req, res) => {
  const city = String(req.query.city ?? 'oslo').toLowerCase();
  const report = WEATHER[city];
  if (!report) {
    // Not 2xx: the paywall releases the payment instead of charging it.
    return res.status(404).json({ error: { code: 'unknown_city', message: `no weather for ${city}` } });
  }
  res.json({ city, ...report });
});

const server = app.listen(Number(env.PORT ?? 8080), '127.0.0.1', () => {
  console.log(`node-express http://127.0.0.1:${server.address().port}`);
});

// Stop accepting, let paid requests in flight settle or release, then close the channel.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => server.close(() => sidecar.close()));
}
