// A wabot backend with Node's standard library only: `WABOT_SECRET=s PORT=8080 node server.js`,
// then run wabot with RESPONDER=http HTTP_RESPONDER_URL=http://127.0.0.1:8080/wabot HTTP_RESPONDER_SECRET=s.
const crypto = require("node:crypto");
const http = require("node:http");

const SECRET = process.env.WABOT_SECRET;

function signedBy(body, header) {
  const expected = Buffer.from("sha256=" + crypto.createHmac("sha256", SECRET).update(body).digest("hex"));
  const got = Buffer.from(header || "");
  return got.length === expected.length && crypto.timingSafeEqual(got, expected);
}

function answer({ message, contact }) {
  if (message.reply_id === "human") {
    return [{ type: "text", text: "Te paso con una persona." }, { type: "handoff" }];
  }
  return [
    { type: "text", text: `Hola ${contact.name || ""}, recibí: ${message.text || message.type}` },
    { type: "buttons", text: "¿Algo más?", buttons: [{ id: "yes", title: "Sí" }, { id: "human", title: "Hablar con alguien" }] },
  ];
}

http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      if (req.method !== "POST" || !signedBy(body, req.headers["x-wabot-signature-256"])) {
        res.writeHead(401).end();
        return;
      }
      const actions = answer(JSON.parse(body));
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ actions }));
    });
  })
  .listen(Number(process.env.PORT || 8080), "127.0.0.1");
