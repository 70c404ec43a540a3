//! The `openai` responder's tools against wiremock model, tool and Graph APIs: a configured tool
//! is called with the model's arguments (signed) and its result fed back; the `actions` tool
//! sends buttons and hands off; a tool loop is cut; a vision model gets the user's image.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use wabot::store::conversation::Role;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    conversation, eventually, graph_bodies, graph_ok, replies, spawn, text_delivery,
    wait_for_replies, wait_until_drained, AppOptions, TestApp,
};

const PNID: &str = "113948572261094";
const WAIT: Duration = Duration::from_secs(30);
const TOOL_SECRET: &str = "tool-signing-secret";

async fn app(llm: &MockServer, graph: Arc<MockServer>, toml: String) -> TestApp {
    let base = format!("{}/v1", llm.uri());
    spawn(AppOptions {
        graph: Some(graph),
        config_toml: Some(toml),
        ..AppOptions::with_env(&[
            ("RESPONDER", "openai"),
            ("OPENAI_MODEL", "test-model"),
            ("OPENAI_BASE_URL", base.as_str()),
            ("WABOT_RESPONDER__OPENAI__FALLBACK", "fallback text"),
        ])
    })
    .await
}

async fn graph() -> Arc<MockServer> {
    let graph = graph_ok().await;
    graph
}

fn tools_toml(tool_url: &str, extra: &str) -> String {
    format!(
        r#"[responder.openai]
max_tool_rounds = 2
tool_secret = "{TOOL_SECRET}"
{extra}

[[responder.openai.tools]]
name = "get_order_status"
description = "The status of an order by its number"
url = "{tool_url}"
parameters = {{ type = "object", properties = {{ order_id = {{ type = "string" }} }}, required = ["order_id"] }}
"#
    )
}

fn tool_call(id: &str, name: &str, arguments: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "c1", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": id, "type": "function",
                "function": {"name": name, "arguments": arguments.to_string()}}]
        }}]
    }))
}

fn completion(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "c2", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
    }))
}

/// A request that carries a tool result (the second round onwards).
fn with_tool_result() -> wiremock::matchers::BodyContainsMatcher {
    body_string_contains(r#""role":"tool""#)
}

fn json_of(request: &wiremock::Request) -> Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}

#[tokio::test]
async fn the_model_calls_a_tool_the_tool_gets_the_arguments_and_the_final_text_is_sent() {
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(with_tool_result())
        .respond_with(completion("Your order A-42 has shipped."))
        .with_priority(1)
        .mount(&llm)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(tool_call(
            "call_1",
            "get_order_status",
            json!({"order_id": "A-42"}),
        ))
        .mount(&llm)
        .await;
    let tool = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/orders"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "shipped"})))
        .mount(&tool)
        .await;
    let graph = graph().await;
    let app = app(
        &llm,
        graph.clone(),
        tools_toml(&format!("{}/orders", tool.uri()), ""),
    )
    .await;
    app.deliver(&text_delivery(
        PNID,
        "4915000000101",
        "wamid.t1",
        "where is my order A-42?",
    ))
    .await;
    let got = wait_for_replies(&graph, 1, WAIT).await;
    assert_eq!(got[0].text, "Your order A-42 has shipped.");
    let calls = tool.received_requests().await.unwrap_or_default();
    assert_eq!(calls.len(), 1);
    let call = json_of(&calls[0]);
    assert_eq!(call["tool"], "get_order_status");
    assert_eq!(call["arguments"], json!({"order_id": "A-42"}));
    assert_eq!(call["contact"]["id"], "4915000000101");
    let signature = calls[0]
        .headers
        .get("x-wabot-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(
        signature,
        wabot::meta::webhook::sign(TOOL_SECRET, &calls[0].body)
    );
    let rounds = llm.received_requests().await.unwrap_or_default();
    assert_eq!(rounds.len(), 2);
    let first = json_of(&rounds[0]);
    assert_eq!(first["tools"][0]["function"]["name"], "get_order_status");
    assert_eq!(
        first["tools"][0]["function"]["parameters"]["required"],
        json!(["order_id"])
    );
    let second = json_of(&rounds[1]);
    let messages = second["messages"].as_array().expect("messages");
    let n = messages.len();
    assert_eq!(messages[n - 2]["role"], "assistant");
    assert_eq!(messages[n - 2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(messages[n - 1]["role"], "tool");
    assert_eq!(messages[n - 1]["tool_call_id"], "call_1");
    assert_eq!(messages[n - 1]["content"], r#"{"status":"shipped"}"#);
}

#[tokio::test]
async fn a_tool_loop_is_cut_after_the_configured_rounds() {
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(tool_call(
            "call_x",
            "get_order_status",
            json!({"order_id": "1"}),
        ))
        .mount(&llm)
        .await;
    let tool = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("still processing"))
        .mount(&tool)
        .await;
    let graph = graph().await;
    let app = app(&llm, graph.clone(), tools_toml(&tool.uri(), "")).await;
    app.deliver(&text_delivery(PNID, "4915000000102", "wamid.t2", "status?"))
        .await;
    wait_for_replies(&graph, 1, WAIT).await;
    wait_until_drained(&app.queue().await, WAIT).await;
    let got = replies(&graph).await;
    assert_eq!(
        got.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["fallback text"]
    );
    // Two rounds of tools (max_tool_rounds = 2), then the third answer still asks: cut.
    assert_eq!(llm.received_requests().await.unwrap_or_default().len(), 3);
    assert_eq!(tool.received_requests().await.unwrap_or_default().len(), 2);
}

#[tokio::test]
async fn the_actions_tool_sends_buttons_and_hands_off() {
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(with_tool_result())
        .respond_with(completion("Here are your options."))
        .with_priority(1)
        .mount(&llm)
        .await;
    Mock::given(method("POST"))
        .respond_with(tool_call(
            "call_a",
            "actions",
            json!({"actions": [
                {"type": "buttons", "text": "Pick one", "buttons": [
                    {"id": "refund", "title": "Refund"}, {"id": "agent", "title": "Talk to a person"}]},
                {"type": "handoff", "note": "upset customer"}
            ]}),
        ))
        .mount(&llm)
        .await;
    let graph = graph().await;
    let app = app(
        &llm,
        graph.clone(),
        tools_toml("http://127.0.0.1:9/unused", "actions_tool = true"),
    )
    .await;
    let user = "4915000000103";
    app.deliver(&text_delivery(PNID, user, "wamid.t3", "this is broken!"))
        .await;
    let sent = eventually(WAIT, || async {
        let got = graph_bodies(&graph).await;
        (got.len() >= 2).then_some(got)
    })
    .await
    .expect("two sends");
    assert_eq!(sent[0]["text"]["body"], "Here are your options.");
    assert_eq!(sent[1]["interactive"]["type"], "button");
    assert_eq!(
        sent[1]["interactive"]["action"]["buttons"][1]["reply"]["title"],
        "Talk to a person"
    );
    let first = json_of(&llm.received_requests().await.unwrap_or_default()[0]);
    let names: Vec<&str> = first["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert_eq!(names, ["get_order_status", "actions"]);
    wait_until_drained(&app.queue().await, WAIT).await;
    let (pnid, uid) = crate::helpers::conversation_ids(PNID, user);
    let view = conversation(&app.conversations().await, &pnid, &uid).await;
    let turns = crate::helpers::roles_and_texts(&view);
    assert_eq!(turns.last(), Some(&(Role::Bot, "[handoff] upset customer")));
}

#[tokio::test]
async fn a_vision_model_gets_the_users_image_as_a_content_part() {
    const MEDIA_ID: &str = "1862047395512308";
    const JPEG: &[u8] = b"\xff\xd8\xff\xe0fake-jpeg";
    let graph = graph().await;
    Mock::given(method("GET"))
        .and(path(format!("/v24.0/{MEDIA_ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "url": format!("{}/media/photo.jpg", graph.uri()), "mime_type": "image/jpeg",
            "file_size": JPEG.len(), "id": MEDIA_ID
        })))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/media/photo.jpg"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(JPEG.to_vec()))
        .mount(&graph)
        .await;
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(completion("A fake JPEG, nicely framed."))
        .mount(&llm)
        .await;
    let app = app(
        &llm,
        graph.clone(),
        "[responder.openai]\nvision = true\n".to_string(),
    )
    .await;
    app.deliver(&crate::helpers::fixture("image_message.json"))
        .await;
    let got = wait_for_replies(&graph, 1, WAIT).await;
    assert_eq!(got[0].text, "A fake JPEG, nicely framed.");
    let request = json_of(&llm.received_requests().await.unwrap_or_default()[0]);
    let last = request["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"][1]["type"], "image_url");
    let expected = format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(JPEG)
    );
    assert_eq!(last["content"][1]["image_url"]["url"], expected);
}

#[tokio::test]
async fn a_round_asking_for_hundreds_of_tool_calls_runs_only_the_first_few() {
    let calls: Vec<Value> = (0..200)
        .map(|i| {
            json!({"id": format!("call_{i}"), "type": "function",
                "function": {"name": "get_order_status", "arguments": json!({"order_id": i.to_string()}).to_string()}})
        })
        .collect();
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(with_tool_result())
        .respond_with(completion("done"))
        .mount(&llm)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c1", "object": "chat.completion", "model": "test-model",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null, "tool_calls": calls}}]
        })))
        .mount(&llm)
        .await;
    let tool = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("shipped"))
        .mount(&tool)
        .await;
    let graph = graph().await;
    let app = app(&llm, graph.clone(), tools_toml(&tool.uri(), "")).await;
    app.deliver(&text_delivery(PNID, "4915000000109", "wamid.t9", "status?"))
        .await;
    let got = wait_for_replies(&graph, 1, WAIT).await;
    assert_eq!(got[0].text, "done");
    assert_eq!(tool.received_requests().await.unwrap_or_default().len(), 8);
    // Every call the model made got a result, run or not.
    let requests = llm.received_requests().await.unwrap_or_default();
    let last = json_of(&requests[requests.len() - 1]);
    let results = last["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .count();
    assert_eq!(results, 200);
}
