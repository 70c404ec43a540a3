"""A wabot backend in FastAPI: `WABOT_SECRET=s uvicorn main:app --port 8080`, then run wabot with
RESPONDER=http HTTP_RESPONDER_URL=http://127.0.0.1:8080/wabot HTTP_RESPONDER_SECRET=s."""
import hashlib, hmac, os
from fastapi import FastAPI, HTTPException, Request

SECRET = os.environ["WABOT_SECRET"].encode()
app = FastAPI()

@app.post("/wabot")
async def answer(request: Request):
    body = await request.body()
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("x-wabot-signature-256", "")):
        raise HTTPException(401, "bad signature")
    event = await request.json()
    message, contact = event["message"], event["contact"]
    if message.get("reply_id") == "human":
        return {"actions": [{"type": "text", "text": "Te paso con una persona."}, {"type": "handoff"}]}
    return {"actions": [
        {"type": "text", "text": f"Hola {contact.get('name') or ''}, recibí: {message.get('text') or message['type']}"},
        {"type": "buttons", "text": "¿Algo más?",
         "buttons": [{"id": "yes", "title": "Sí"}, {"id": "human", "title": "Hablar con alguien"}]},
    ]}
