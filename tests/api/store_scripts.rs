//! Each Lua script of `src/store/lua/` against a real redis-server, without the rest of the app.

use std::time::Duration;

use wabot::domain::language::Language;
use wabot::domain::menu::{Menu, MenuOption};
use wabot::domain::{InboundMessage, MessageContent, PhoneNumberId, Sender, UserId, WaMessageId};
use wabot::store::conversation::{
    Admission, AdmitMode, ConversationLimits, ConversationStore, LanguageClaim, Remember,
    Remembered, Role, Turn,
};
use wabot::store::pacing::{PacingLimits, RedisPacer};
use wabot::store::queue::Queue;
use wabot::store::Keys;

use crate::helpers::RedisServer;

const PNID: &str = "106540352242922";
const USER: &str = "4915123456789";

async fn client(redis: &RedisServer) -> wabot::store::Client {
    let client = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&redis.url()).expect("url"),
    )
    .build()
    .expect("client");
    fred::prelude::ClientLike::init(&client)
        .await
        .expect("redis connects");
    client
}

async fn store(redis: &RedisServer, max_history: usize, rate_messages: u32) -> ConversationStore {
    ConversationStore::new(
        client(redis).await,
        Keys::new("s", 8),
        ConversationLimits {
            session_ttl_secs: 600,
            max_history,
            rate_messages,
            rate_window_ms: 60_000,
            handoff_ms: 3_600_000,
            events: false,
        },
    )
}

fn message(wamid: &str, text: &str) -> InboundMessage {
    InboundMessage {
        id: WaMessageId::parse(wamid).expect("wamid"),
        phone_number_id: PhoneNumberId::parse(PNID).expect("pnid"),
        user: UserId::parse(USER).expect("user"),
        sender: Sender {
            phone: Some(USER.into()),
            bsuid: None,
            profile_name: Some("Ana".into()),
            username: None,
        },
        timestamp: 1_793_452_187,
        reply_to: None,
        forwarded: false,
        origin: Default::default(),
        content: MessageContent::Text { body: text.into() },
    }
}

async fn admit(store: &ConversationStore, m: &InboundMessage, mode: AdmitMode<'_>) -> Admission {
    store
        .admit(m, &Turn::of_user(m, Role::User), mode, true, None)
        .await
        .expect("admit runs")
}

fn bot(text: &str) -> Turn {
    Turn::sent(
        Role::Bot,
        text.into(),
        "text",
        &format!("wamid.out.{text}"),
        1,
    )
}

/// The user's edit `wamid` of the message `original`, admitted.
async fn edit(store: &ConversationStore, wamid: &str, original: &str, text: &str) -> Admission {
    let m = message(wamid, "[edited]");
    admit(store, &m, AdmitMode::Edit { original, text }).await
}

/// One exchange: the user's message admitted and answered with `reply`.
async fn exchange(store: &ConversationStore, m: &InboundMessage, reply: &str) {
    admit(store, m, AdmitMode::Answer).await;
    store.record_reply(m, &[bot(reply)]).await.expect("record");
}

fn texts(history: &[Turn]) -> Vec<&str> {
    history.iter().map(|t| t.text.as_str()).collect()
}

#[tokio::test]
async fn admit_returns_the_history_and_a_duplicate_resumes_until_answered() {
    let redis = RedisServer::start();
    let store = store(&redis, 40, 100).await;
    let m = message("wamid.a1", "hola");
    let Admission::Answer { history, .. } = admit(&store, &m, AdmitMode::Answer).await else {
        panic!("a new message is answered");
    };
    assert_eq!(texts(&history), ["hola"]);
    // Not answered yet: a retry answers it, with nothing sent so far.
    assert!(matches!(
        admit(&store, &m, AdmitMode::Answer).await,
        Admission::Resume { parts_sent: 0, .. }
    ));
    store.record_progress(&m, 2).await.expect("progress");
    let Admission::Resume {
        parts_sent,
        history,
        ..
    } = admit(&store, &m, AdmitMode::Answer).await
    else {
        panic!("still not answered");
    };
    assert_eq!((parts_sent, texts(&history)), (2, vec!["hola"]));
    assert!(store
        .record_reply(&m, &[bot("¡Hola!")])
        .await
        .expect("record"));
    assert_eq!(admit(&store, &m, AdmitMode::Answer).await, Admission::Done);
    // A second record of the same reply is refused.
    assert!(!store
        .record_reply(&m, &[bot("again")])
        .await
        .expect("record"));
    let pnid = PhoneNumberId::parse(PNID).expect("pnid");
    let user = UserId::parse(USER).expect("user");
    let view = store.get(&pnid, &user).await.expect("get").expect("exists");
    assert_eq!(texts(&view.turns), ["hola", "¡Hola!"]);
    assert_eq!(view.count, 2);
    assert_eq!(view.profile_name.as_deref(), Some("Ana"));
    assert!(
        view.ttl_secs > 590 && view.ttl_secs <= 600,
        "{}",
        view.ttl_secs
    );
}

#[tokio::test]
async fn the_rate_limit_admits_a_burst_then_records_without_answering() {
    let redis = RedisServer::start();
    let store = store(&redis, 40, 2).await;
    for i in 0..2 {
        let m = message(&format!("wamid.r{i}"), "hi");
        assert!(matches!(
            admit(&store, &m, AdmitMode::Answer).await,
            Admission::Answer { .. }
        ));
    }
    let third = message("wamid.r2", "hi");
    assert_eq!(
        admit(&store, &third, AdmitMode::Answer).await,
        Admission::Limited {
            notice: true,
            language: None
        }
    );
    let fourth = message("wamid.r3", "hi");
    assert_eq!(
        admit(&store, &fourth, AdmitMode::Reset).await,
        Admission::Limited {
            notice: false,
            language: None
        },
        "a command is limited like any message, one notice per window"
    );
    // A redelivered limited message stays unanswered; recorded kinds are not limited.
    assert_eq!(
        admit(&store, &third, AdmitMode::Answer).await,
        Admission::Recorded
    );
    let echo = message("wamid.r4", "from the phone");
    assert_eq!(
        admit(&store, &echo, AdmitMode::Record).await,
        Admission::Recorded
    );
}

#[tokio::test]
async fn history_is_trimmed_with_its_markers_and_reset_keeps_the_markers() {
    let redis = RedisServer::start();
    let store = store(&redis, 4, 100).await;
    for i in 0..5 {
        let m = message(&format!("wamid.t{i}"), &format!("u{i}"));
        exchange(&store, &m, &format!("b{i}")).await;
    }
    let pnid = PhoneNumberId::parse(PNID).expect("pnid");
    let user = UserId::parse(USER).expect("user");
    let view = store.get(&pnid, &user).await.expect("get").expect("exists");
    assert_eq!(texts(&view.turns), ["u3", "b3", "u4", "b4"]);
    let key =
        Keys::new("s", 8).conversation(Keys::new("s", 8).partition(&pnid, &user), &pnid, &user);
    let markers = redis.cli(&["HKEYS", &key]);
    assert_eq!(
        markers.lines().filter(|f| f.starts_with("w:")).count(),
        2,
        "markers of trimmed turns are dropped: {markers}"
    );
    let reset = message("wamid.t9", "/reset");
    assert!(matches!(
        admit(&store, &reset, AdmitMode::Reset).await,
        Admission::Answer { history, .. } if history.is_empty()
    ));
    store
        .record_reply(&reset, &[bot("reset")])
        .await
        .expect("record");
    let view = store.get(&pnid, &user).await.expect("get").expect("exists");
    assert_eq!(texts(&view.turns), ["reset"]);
    assert_eq!(
        admit(&store, &reset, AdmitMode::Answer).await,
        Admission::Done
    );
}

#[tokio::test]
async fn an_edit_replaces_the_kept_turn_and_is_never_answered() {
    let redis = RedisServer::start();
    let store = store(&redis, 40, 100).await;
    let original = message("wamid.e1", "precio del plan basico");
    exchange(&store, &original, "20 €").await;
    let edit_e2 = || edit(&store, "wamid.e2", "wamid.e1", "precio del plan pro");
    assert_eq!(edit_e2().await, Admission::Recorded);
    assert_eq!(edit_e2().await, Admission::Done);
    let pnid = PhoneNumberId::parse(PNID).expect("pnid");
    let user = UserId::parse(USER).expect("user");
    let view = store.get(&pnid, &user).await.expect("get").expect("exists");
    assert_eq!(texts(&view.turns), ["precio del plan pro", "20 €"]);
    assert!(view.turns[0].edited);
    // The edit of a message no longer kept is appended instead.
    assert_eq!(
        edit(&store, "wamid.e3", "wamid.gone", "something").await,
        Admission::Recorded
    );
    let view = store.get(&pnid, &user).await.expect("get").expect("exists");
    assert_eq!(view.turns.len(), 3);
}

#[tokio::test]
async fn a_corrupt_conversation_is_a_data_error_and_can_be_moved_aside() {
    let redis = RedisServer::start();
    let store = store(&redis, 40, 100).await;
    let pnid = PhoneNumberId::parse(PNID).expect("pnid");
    let user = UserId::parse(USER).expect("user");
    let keys = Keys::new("s", 8);
    let key = keys.conversation(keys.partition(&pnid, &user), &pnid, &user);
    redis.cli(&["SET", &key, "not a hash"]);
    let m = message("wamid.c1", "hi");
    let error = store
        .admit(
            &m,
            &Turn::of_user(&m, Role::User),
            AdmitMode::Answer,
            true,
            None,
        )
        .await
        .expect_err("a string is not a conversation");
    assert!(!error.is_outage(), "{error:?}");
    assert!(store.quarantine(&pnid, &user).await.expect("quarantine"));
    assert!(matches!(
        admit(&store, &m, AdmitMode::Answer).await,
        Admission::Answer { .. }
    ));
    let moved = keys.quarantined(keys.partition(&pnid, &user), &pnid, &user);
    assert_eq!(redis.cli(&["GET", &moved[0]]), "not a hash");
}

#[tokio::test]
async fn pacing_admits_a_pair_burst_then_spaces_and_shares_the_number_rate() {
    let redis = RedisServer::start();
    let pacer = RedisPacer::new(
        client(&redis).await,
        Keys::new("s", 8),
        PacingLimits {
            per_number_per_sec: 0,
            pair_interval: Duration::from_secs(6),
            pair_burst: 3,
        },
    );
    for _ in 0..3 {
        assert_eq!(
            pacer.reserve(PNID, "+1").await.expect("pace"),
            Duration::ZERO
        );
    }
    let wait = pacer.reserve(PNID, "+1").await.expect("pace");
    assert!(wait > Duration::from_secs(5), "{wait:?}");
    assert_eq!(
        pacer.reserve(PNID, "+2").await.expect("pace"),
        Duration::ZERO
    );

    let number = RedisPacer::new(
        client(&redis).await,
        Keys::new("n", 8),
        PacingLimits {
            per_number_per_sec: 10,
            pair_interval: Duration::ZERO,
            pair_burst: 1,
        },
    );
    let mut waits = Vec::new();
    for i in 0..5 {
        waits.push(number.reserve(PNID, &format!("+{i}")).await.expect("pace"));
    }
    // Slots 100 ms apart whoever asks: each reservation waits longer than the one before.
    assert!(waits.windows(2).all(|w| w[1] > w[0]), "{waits:?}");
    assert!(waits[4] >= Duration::from_millis(350), "{waits:?}");
}

fn ids() -> (PhoneNumberId, UserId) {
    (
        PhoneNumberId::parse(PNID).expect("pnid"),
        UserId::parse(USER).expect("user"),
    )
}

/// The conversation's hash and history keys (prefix `s`, 8 partitions, as `store` uses).
fn conversation_keys() -> (String, String) {
    let keys = Keys::new("s", 8);
    let (pnid, user) = ids();
    let partition = keys.partition(&pnid, &user);
    (
        keys.conversation(partition, &pnid, &user),
        keys.history(partition, &pnid, &user),
    )
}

/// A key's TTL in seconds (-2: no such key, -1: none).
fn ttl_of(redis: &RedisServer, key: &str) -> i64 {
    redis.cli(&["TTL", key]).parse().expect("ttl")
}

#[tokio::test]
async fn status_moves_a_turns_delivery_state_forward_only() {
    let redis = RedisServer::start();
    let store = store(&redis, 10, 100).await;
    let m = message("wamid.st1", "hi");
    exchange(&store, &m, "one").await;
    let (pnid, user) = ids();
    let state = |store: ConversationStore| async move {
        let view = store.get(&pnid, &user).await.expect("get").expect("exists");
        view.turns[1].delivery.clone()
    };
    let (p, u) = ids();
    for status in ["read", "delivered", "sent"] {
        let applied = store
            .apply_status(&p, &u, "wamid.out.one", status, None)
            .await
            .expect("status");
        assert!(applied.found);
        assert_eq!(applied.kind, "text");
    }
    assert_eq!(state(store.clone()).await.as_deref(), Some("read"));
    let error = wabot::store::conversation::DeliveryError {
        code: 131047,
        title: Some("Re-engagement message".into()),
    };
    store
        .apply_status(&p, &u, "wamid.out.one", "failed", Some(&error))
        .await
        .expect("status");
    let view = store.get(&p, &u).await.expect("get").expect("exists");
    assert_eq!(view.turns[1].delivery.as_deref(), Some("failed"));
    assert_eq!(view.turns[1].failure.as_ref(), Some(&error));
    assert_eq!(view.last_failure.expect("last failure")["code"], 131047);
    let unknown = store
        .apply_status(&p, &u, "wamid.out.nope", "read", None)
        .await
        .expect("status");
    assert!(!unknown.found);

    // The re-engagement template went out for the failed turn: flagged, its state kept.
    assert!(!store
        .mark_reengaged(&p, &u, "wamid.out.nope")
        .await
        .expect("mark"));
    assert!(store
        .mark_reengaged(&p, &u, "wamid.out.one")
        .await
        .expect("mark"));
    let again = store
        .apply_status(&p, &u, "wamid.out.one", "failed", Some(&error))
        .await
        .expect("status");
    assert!(again.reengaged, "a later copy of the failure sees the flag");
    let view = store.get(&p, &u).await.expect("get").expect("exists");
    assert!(view.turns[1].reengaged && !view.turns[0].reengaged);
    assert_eq!(view.turns[1].delivery.as_deref(), Some("failed"));
    assert_eq!(view.turns[1].failure.as_ref(), Some(&error));
}

#[tokio::test]
async fn outbound_is_once_per_id_and_an_operator_takes_the_conversation() {
    let redis = RedisServer::start();
    let store = store(&redis, 10, 100).await;
    let (pnid, user) = ids();
    let out = wabot::pipeline::outbound::request(
        pnid.clone(),
        user.clone(),
        wabot::domain::OutboundSource::Operator,
        wabot::pipeline::outbound::content(Some("hola"), None, None).expect("content"),
        Some("key"),
    )
    .expect("request");
    let first = store.begin_outbound(&out, "").await.expect("begin");
    assert!(matches!(
        first,
        wabot::store::conversation::OutboundStart::Send {
            parts_sent: 0,
            last_user_ms: None,
            owner: wabot::store::conversation::Owner::Human,
            language: None,
        }
    ));
    let again = store.begin_outbound(&out, "").await.expect("begin");
    assert!(
        matches!(
            again,
            wabot::store::conversation::OutboundStart::Send { .. }
        ),
        "not recorded yet: resumable"
    );
    let subject = wabot::store::conversation::Subject {
        pnid: &pnid,
        user: &user,
        id: &out.id,
    };
    store
        .record_sent(&subject, 0, true, &[bot("hola")], &Remember::default())
        .await
        .expect("record");
    assert_eq!(
        store.begin_outbound(&out, "").await.expect("begin"),
        wabot::store::conversation::OutboundStart::Done
    );
    assert!(!store.bot_owns(&pnid, &user).await.expect("owner"));
    assert!(store.give_back(&pnid, &user).await.expect("resume"));
    assert!(store.bot_owns(&pnid, &user).await.expect("owner"));
}

#[tokio::test]
async fn a_handoff_request_silences_the_conversation_until_reset() {
    let redis = RedisServer::start();
    let store = store(&redis, 10, 100).await;
    let asked = message("wamid.ho1", "/agent");
    assert!(matches!(
        admit(&store, &asked, AdmitMode::Handoff).await,
        Admission::Answer { .. }
    ));
    let later = message("wamid.ho2", "hello?");
    assert_eq!(
        admit(&store, &later, AdmitMode::Answer).await,
        Admission::WithPerson
    );
    assert_eq!(
        admit(&store, &later, AdmitMode::Answer).await,
        Admission::Done,
        "a redelivery is a duplicate"
    );
    let reset = message("wamid.ho3", "/reset");
    assert!(matches!(
        admit(&store, &reset, AdmitMode::Reset).await,
        Admission::Answer { .. }
    ));
    let (pnid, user) = ids();
    assert!(store.bot_owns(&pnid, &user).await.expect("owner"));
    let view = store.get(&pnid, &user).await.expect("get").expect("exists");
    assert_eq!(view.handoff.owner, wabot::store::conversation::Owner::Bot);
}

#[tokio::test]
async fn routing_keeps_the_newest_handover() {
    let redis = RedisServer::start();
    let store = store(&redis, 10, 100).await;
    let (pnid, user) = ids();
    let handover = |owned, timestamp| wabot::domain::Handover {
        phone_number_id: pnid.clone(),
        user: user.clone(),
        owned,
        timestamp,
    };
    assert!(store
        .set_routing(&handover(false, 100))
        .await
        .expect("routing"));
    assert!(!store.bot_owns(&pnid, &user).await.expect("owner"));
    assert!(store
        .set_routing(&handover(true, 120))
        .await
        .expect("routing"));
    assert!(
        !store
            .set_routing(&handover(false, 110))
            .await
            .expect("routing"),
        "older than what was applied"
    );
    assert!(store.bot_owns(&pnid, &user).await.expect("owner"));
}

#[tokio::test]
async fn the_sliding_ttl_is_refreshed_once_it_ran_down_and_a_new_history_always_gets_one() {
    let redis = RedisServer::start();
    // TTL 600 s: refreshed once 1 % of it (6 s) passed since the last refresh.
    let store = store(&redis, 40, 100).await;
    let (conv, hist) = conversation_keys();
    let ttl = |key: &str| ttl_of(&redis, key);

    let first = message("wamid.ttl1", "hola");
    exchange(&store, &first, "b1").await;
    assert!(
        ttl(&conv) > 590 && ttl(&hist) > 590,
        "a new conversation gets the TTL"
    );

    // As if 100 s had passed, but the last refresh was moments ago: not refreshed again yet.
    redis.cli(&["EXPIRE", &conv, "500"]);
    redis.cli(&["EXPIRE", &hist, "500"]);
    let second = message("wamid.ttl2", "otra");
    exchange(&store, &second, "b2").await;
    assert!(
        ttl(&conv) <= 500 && ttl(&hist) <= 500,
        "refreshed before 1 % ran down"
    );

    // The last refresh 7 s ago: the next message slides both keys' TTL again.
    let now_ms = wabot::domain::clock::unix_ms();
    redis.cli(&["HSET", &conv, "x", &(now_ms - 7_000).to_string()]);
    let third = message("wamid.ttl3", "y otra");
    admit(&store, &third, AdmitMode::Answer).await;
    assert!(ttl(&conv) > 590 && ttl(&hist) > 590, "the TTL slides");

    // A reset drops the history; the list its reply creates has a TTL of its own.
    let reset = message("wamid.ttl4", "/reset");
    admit(&store, &reset, AdmitMode::Reset).await;
    store
        .record_reply(&reset, &[bot("reset")])
        .await
        .expect("record");
    assert!(ttl(&hist) > 0, "the history after a reset has no TTL");
}

#[tokio::test]
async fn turns_an_earlier_version_stored_are_found_updated_and_trimmed_with_their_markers() {
    use fred::prelude::{HashesInterface, ListInterface};
    use wabot::store::turn::marker_digest;
    let redis = RedisServer::start();
    let client = client(&redis).await;
    let store = store(&redis, 2, 100).await;
    let (pnid, user) = ids();
    let (conv, hist) = conversation_keys();
    // What versions before the positional encoding wrote: objects, our full wamid in `o`.
    let first = format!("w:{}", marker_digest("wamid.old1"));
    let third = format!("w:{}", marker_digest("wamid.old3"));
    let _: () = client
        .hset(
            &conv,
            vec![("n", "3"), ("c", "1"), (&first, "1:r"), (&third, "3:r")],
        )
        .await
        .expect("hset");
    let legacy = [
        format!(
            r#"{{"r":"u","t":"hola","w":"{}","ts":1}}"#,
            marker_digest("wamid.old1")
        ),
        r#"{"r":"b","t":"20 €","o":"wamid.out.old","ts":2,"d":"delivered"}"#.to_string(),
        format!(
            r#"{{"r":"u","t":"precio","w":"{}","ts":3}}"#,
            marker_digest("wamid.old3")
        ),
    ];
    let _: () = client.rpush(&hist, legacy.to_vec()).await.expect("rpush");

    let applied = store
        .apply_status(&pnid, &user, "wamid.out.old", "read", None)
        .await
        .expect("status");
    assert!(applied.found);
    // The edit finds its old turn; over the bound of 2, the oldest (untouched) old turn goes
    // and takes its marker along.
    assert_eq!(
        edit(&store, "wamid.old4", "wamid.old3", "precio del plan pro").await,
        Admission::Recorded
    );
    let view = store.get(&pnid, &user).await.expect("get").expect("exists");
    assert_eq!(texts(&view.turns), ["20 €", "precio del plan pro"]);
    assert!(view.turns[0].is_message("wamid.out.old"));
    assert_eq!(view.turns[0].delivery.as_deref(), Some("read"));
    assert!(view.turns[1].edited);
    let dropped: Option<String> = client.hget(&conv, &first).await.expect("hget");
    assert_eq!(dropped, None);
    let kept: Option<String> = client.hget(&conv, &third).await.expect("hget");
    assert_eq!(kept.as_deref(), Some("3:r"));
    // Rewritten turns take the new encoding.
    let raw: Vec<String> = client.lrange(&hist, 0, -1).await.expect("lrange");
    assert!(raw.iter().all(|t| t.starts_with('[')), "{raw:?}");
}

#[tokio::test]
async fn a_handoff_longer_than_the_session_ttl_keeps_the_conversation_until_it_ends() {
    let redis = RedisServer::start();
    // The session TTL is 600 s; a person keeps a conversation for an hour.
    let store = store(&redis, 40, 100).await;
    let (pnid, user) = ids();
    let (conv, hist) = conversation_keys();
    let ttl = |key: &str| ttl_of(&redis, key);
    let both = || (ttl(&conv), ttl(&hist));
    let kept_for_the_handoff = |(c, h): (i64, i64)| c > 3_500 && h > 3_500;
    let sliding = |(c, h): (i64, i64)| c > 0 && c <= 600 && h > 0 && h <= 600;

    // Asked for a person moments after the last refresh: both keys outlast the session TTL.
    exchange(&store, &message("wamid.long1", "hola"), "b1").await;
    assert!(sliding(both()), "{:?}", both());
    let asked = message("wamid.long2", "/agent");
    assert!(matches!(
        admit(&store, &asked, AdmitMode::Handoff).await,
        Admission::Answer { .. }
    ));
    assert!(kept_for_the_handoff(both()), "{:?}", both());

    // A message while the person has it, its refresh due: not cut back to the session TTL.
    let now_ms = wabot::domain::clock::unix_ms();
    redis.cli(&["HSET", &conv, "x", &(now_ms - 60_000).to_string()]);
    assert_eq!(
        admit(
            &store,
            &message("wamid.long3", "sigo aquí"),
            AdmitMode::Answer
        )
        .await,
        Admission::WithPerson
    );
    assert!(kept_for_the_handoff(both()), "{:?}", both());

    // Meta's routing notification is activity too, and keeps the handoff's span.
    let handover = wabot::domain::Handover {
        phone_number_id: pnid.clone(),
        user: user.clone(),
        owned: true,
        timestamp: 100,
    };
    assert!(store.set_routing(&handover).await.expect("routing"));
    assert!(kept_for_the_handoff(both()), "{:?}", both());

    // Given back: the ordinary sliding TTL again.
    assert!(store.give_back(&pnid, &user).await.expect("resume"));
    assert!(sliding(both()), "{:?}", both());
    assert!(store.bot_owns(&pnid, &user).await.expect("owner"));

    // An operator's message takes the conversation for an hour.
    let out = wabot::pipeline::outbound::request(
        pnid.clone(),
        user.clone(),
        wabot::domain::OutboundSource::Operator,
        wabot::pipeline::outbound::content(Some("le ayudo"), None, None).expect("content"),
        Some("long-op"),
    )
    .expect("request");
    store.begin_outbound(&out, "").await.expect("begin");
    assert!(kept_for_the_handoff(both()), "{:?}", both());

    // Taken from the console for two hours.
    assert!(store.give_back(&pnid, &user).await.expect("resume"));
    let until = wabot::domain::clock::unix_ms() + 7_200_000;
    store
        .take_over(&pnid, &user, until, &serde_json::json!({"by": "ops"}), None)
        .await
        .expect("take");
    let (c, h) = both();
    assert!(c > 7_100 && h > 7_100, "{:?}", (c, h));
    let view = store.get(&pnid, &user).await.expect("get").expect("exists");
    assert_eq!(view.handoff.owner, wabot::store::conversation::Owner::Human);
}

#[tokio::test]
async fn an_echo_pausing_the_bot_longer_than_the_session_ttl_keeps_the_conversation() {
    let redis = RedisServer::start();
    let store = store(&redis, 40, 100).await;
    let (pnid, user) = ids();
    let (conv, hist) = conversation_keys();
    let ttl = |key: &str| ttl_of(&redis, key);
    exchange(&store, &message("wamid.echo1", "hola"), "b1").await;

    // The business answers from the phone; the bot pauses for two hours, the session is 600 s.
    let keys = Keys::new("s", 8);
    let inbox = wabot::store::RedisInbox::new(client(&redis).await, keys.clone())
        .with_echo_pause(7_200_000, 600);
    let mut echo = message("wamid.echo2", "Soy Pedro, le ayudo yo");
    echo.origin = wabot::domain::Origin::BusinessEcho;
    let item = wabot::domain::InboxItem::Message(echo);
    assert!(inbox.accept_one(&item).await.expect("accept"));
    assert!(
        ttl(&conv) > 7_100 && ttl(&hist) > 7_100,
        "{:?}",
        (ttl(&conv), ttl(&hist))
    );
    assert!(!store.bot_owns(&pnid, &user).await.expect("owner"));

    // A short pause keeps the session TTL.
    let short =
        wabot::store::RedisInbox::new(client(&redis).await, keys).with_echo_pause(60_000, 600);
    assert!(store.give_back(&pnid, &user).await.expect("resume"));
    redis.cli(&["EXPIRE", &conv, "100"]);
    redis.cli(&["EXPIRE", &hist, "100"]);
    let mut again = message("wamid.echo3", "Otra vez Pedro");
    again.origin = wabot::domain::Origin::BusinessEcho;
    assert!(short
        .accept_one(&wabot::domain::InboxItem::Message(again))
        .await
        .expect("accept"));
    let (c, h) = (ttl(&conv), ttl(&hist));
    assert!(c > 590 && c <= 600 && h > 590 && h <= 600, "{:?}", (c, h));
}

#[tokio::test]
async fn the_acknowledgement_applies_the_write_a_message_left_even_when_the_lease_is_lost() {
    let redis = RedisServer::start();
    let store = store(&redis, 10, 100).await;
    let keys = Keys::new("s", 8);
    let queue = Queue::new(client(&redis).await, keys.clone(), 10_000);
    let (pnid, user) = ids();
    let partition = keys.partition(&pnid, &user);
    let inbox = keys.inbox(partition);
    queue.ensure_group(partition).await.expect("group");
    assert!(queue.acquire(partition, "me").await.expect("lease"));
    let mut stored = Vec::new();
    for n in 0..3 {
        stored.push(redis.cli(&["XADD", &inbox, "*", "m", "{}", "w", &format!("wamid.q{n}")]));
    }
    let read = queue.read(partition, None, 10, None).await.expect("read");
    assert_eq!(read.len(), 3);
    let pending = || redis.cli(&["XPENDING", &inbox, "workers"]);

    // The reply's record and the acknowledgement of two entries: one call.
    let m = message("wamid.q0", "hola");
    assert!(matches!(
        admit(&store, &m, AdmitMode::Answer).await,
        Admission::Answer { .. }
    ));
    let write = store.reply_write(&m, &[bot("¡Hola!")], &Remember::default());
    assert!(queue
        .ack(partition, "me", &[&stored[0], &stored[1]], Some(&write))
        .await
        .expect("ack"));
    assert_eq!(redis.cli(&["XLEN", &inbox]), "1", "both entries deleted");
    assert!(matches!(
        admit(&store, &m, AdmitMode::Answer).await,
        Admission::Done
    ));
    let view = store.get(&pnid, &user).await.expect("get").expect("exists");
    assert_eq!(texts(&view.turns), ["hola", "¡Hola!"]);

    // A status left for the acknowledgement moves the turn's delivery state.
    let status = store
        .status_write(&pnid, &user, "wamid.out.¡Hola!", "read", None)
        .expect("status write");
    assert!(queue
        .ack(partition, "me", &[], Some(&status))
        .await
        .expect("ack"));
    let view = store.get(&pnid, &user).await.expect("get").expect("exists");
    assert_eq!(view.turns[1].delivery.as_deref(), Some("read"));

    // Another replica took the partition over: the entry stays pending for it, and what was
    // sent is recorded all the same (the new owner must not send it again).
    redis.cli(&["SET", &keys.lease(partition), "someone-else"]);
    let m2 = message("wamid.q2", "¿sigues?");
    admit(&store, &m2, AdmitMode::Answer).await;
    let write = store.reply_write(&m2, &[bot("sí")], &Remember::default());
    assert!(!queue
        .ack(partition, "me", &[&stored[2]], Some(&write))
        .await
        .expect("ack"));
    assert_eq!(redis.cli(&["XLEN", &inbox]), "1");
    assert!(pending().starts_with('1'), "{}", pending());
    assert!(matches!(
        admit(&store, &m2, AdmitMode::Answer).await,
        Admission::Done
    ));

    // A conversation Redis refuses to write is a data error, not an outage: the runner drops
    // the write and acknowledges without it instead of retrying forever.
    redis.cli(&["SET", &keys.lease(partition), "me"]);
    let (conv, hist) = conversation_keys();
    redis.cli(&["DEL", &conv, &hist]);
    redis.cli(&["SET", &conv, "not a hash"]);
    let refused = queue
        .ack(partition, "me", &[&stored[2]], Some(&write))
        .await
        .expect_err("a string is not a conversation");
    assert!(!refused.is_outage(), "{refused}");
    assert_eq!(redis.cli(&["XLEN", &inbox]), "1", "nothing acknowledged");
}

#[tokio::test]
async fn a_lease_is_renewed_and_released_only_by_its_holder() {
    let redis = RedisServer::start();
    let keys = Keys::new("s", 8);
    let queue = Queue::new(client(&redis).await, keys.clone(), 10_000);
    let lease = keys.lease(3);
    let pttl = || -> i64 { redis.cli(&["PTTL", &lease]).parse().expect("number") };
    assert!(queue.acquire(3, "me").await.expect("acquire"));
    assert!(!queue.acquire(3, "other").await.expect("acquire"));
    redis.cli(&["PEXPIRE", &lease, "500"]);
    assert!(queue.renew(3, "me").await.expect("renew"));
    assert!(pttl() > 9_000, "renewed to the full ttl: {}", pttl());
    // Another replica can neither renew nor release it.
    assert!(!queue.renew(3, "other").await.expect("renew"));
    queue.release(3, "other").await.expect("release");
    assert_eq!(redis.cli(&["GET", &lease]), "me");
    // Its holder releases it; a renewal of a lease nobody holds takes it again.
    queue.release(3, "me").await.expect("release");
    assert_eq!(redis.cli(&["EXISTS", &lease]), "0");
    assert!(queue.renew(3, "other").await.expect("renew"));
    assert_eq!(redis.cli(&["GET", &lease]), "other");
    assert!(pttl() > 9_000);
    assert!(!queue.renew(3, "me").await.expect("renew"));
}

#[tokio::test]
async fn mark_answered_closes_the_earlier_messages_of_a_burst_answered_together() {
    let redis = RedisServer::start();
    let store = store(&redis, 10, 100).await;
    let first = message("wamid.burst.1", "hola");
    let second = message("wamid.burst.2", "¿estás?");
    for m in [&first, &second] {
        assert!(matches!(
            admit(&store, m, AdmitMode::Answer).await,
            Admission::Answer { .. }
        ));
    }
    // One reply for both, recorded on the later message.
    store
        .record_reply(&second, &[bot("¡Hola! Sí.")])
        .await
        .expect("record");
    assert!(matches!(
        admit(&store, &second, AdmitMode::Answer).await,
        Admission::Done
    ));
    let before = admit(&store, &first, AdmitMode::Answer).await;
    assert!(
        !matches!(before, Admission::Done),
        "the earlier message is still open: {before:?}"
    );
    store.mark_answered(&[&first]).await.expect("mark");
    assert!(matches!(
        admit(&store, &first, AdmitMode::Answer).await,
        Admission::Done
    ));
    // Nothing else moved: the history is the two messages and the one reply.
    let (pnid, user) = ids();
    let view = store.get(&pnid, &user).await.expect("get").expect("exists");
    assert_eq!(texts(&view.turns), ["hola", "¿estás?", "¡Hola! Sí."]);
}

async fn admit_saying(
    store: &ConversationStore,
    m: &InboundMessage,
    mode: AdmitMode<'_>,
    claim: Option<(Language, bool)>,
) -> Remembered {
    let claim = claim.map(|(language, chosen)| LanguageClaim { language, chosen });
    match store
        .admit(m, &Turn::of_user(m, Role::User), mode, false, claim)
        .await
        .expect("admit runs")
    {
        Admission::Answer { remembered, .. } | Admission::Resume { remembered, .. } => remembered,
        other => panic!("not answered: {other:?}"),
    }
}

#[tokio::test]
async fn the_conversation_keeps_its_language_and_last_menu_until_reset() {
    let redis = RedisServer::start();
    let store = store(&redis, 40, 100).await;
    let say = |id: &str, text: &str| message(id, text);

    // Nothing known yet; a detected language is kept and replaced by another detected one.
    let first = say("wamid.l1", "ok");
    assert_eq!(
        admit_saying(&store, &first, AdmitMode::Answer, None).await,
        Remembered::default()
    );
    let menu = Menu {
        language: Some("es".into()),
        options: vec![MenuOption {
            id: "menu_prices".into(),
            title: "2 Precios".into(),
        }],
        list: true,
    };
    store
        .apply(store.reply_write(
            &first,
            &[bot("menú")],
            &Remember {
                menu: Some(menu.clone()),
                chosen_language: None,
            },
        ))
        .await
        .expect("record");
    let es = say("wamid.l2", "¿cuánto cuesta el plan?");
    let remembered =
        admit_saying(&store, &es, AdmitMode::Answer, Some((Language::Es, false))).await;
    assert_eq!(remembered.language, Some(Language::Es));
    assert!(!remembered.chosen);
    assert_eq!(
        remembered.menu.as_ref(),
        Some(&menu),
        "the menu is remembered"
    );
    store
        .record_reply(&es, &[bot("29 €")])
        .await
        .expect("record");
    let pt = say("wamid.l3", "quanto custa o plano pro?");
    assert_eq!(
        admit_saying(&store, &pt, AdmitMode::Answer, Some((Language::Pt, false)))
            .await
            .language,
        Some(Language::Pt)
    );
    store
        .record_reply(&pt, &[bot("29 €")])
        .await
        .expect("record");

    // A choice holds against detection, until the user chooses again.
    let chose = say("wamid.l4", "/idioma en");
    let remembered = admit_saying(
        &store,
        &chose,
        AdmitMode::Answer,
        Some((Language::En, true)),
    )
    .await;
    assert_eq!(
        (remembered.language, remembered.chosen),
        (Some(Language::En), true)
    );
    store
        .record_reply(&chose, &[bot("ok")])
        .await
        .expect("record");
    let spanish = say("wamid.l5", "quiero hablar con una persona");
    let remembered = admit_saying(
        &store,
        &spanish,
        AdmitMode::Answer,
        Some((Language::Es, false)),
    )
    .await;
    assert_eq!(
        (remembered.language, remembered.chosen),
        (Some(Language::En), true)
    );
    store
        .record_reply(&spanish, &[bot("ok")])
        .await
        .expect("record");

    // Choosing from the language menu is recorded with the reply.
    let typed = say("wamid.l6", "Português");
    admit_saying(&store, &typed, AdmitMode::Answer, None).await;
    store
        .apply(store.reply_write(
            &typed,
            &[bot("pronto")],
            &Remember {
                menu: None,
                chosen_language: Some(Language::Pt),
            },
        ))
        .await
        .expect("record");

    // `/reset` forgets the menu, not the language.
    let reset = say("wamid.l7", "/reset");
    let remembered = admit_saying(&store, &reset, AdmitMode::Reset, None).await;
    assert_eq!(remembered.language, Some(Language::Pt));
    assert!(remembered.chosen);
    assert_eq!(remembered.menu, None);
    store
        .record_reply(&reset, &[bot("reset")])
        .await
        .expect("record");
    let after = say("wamid.l8", "hi");
    let remembered = admit_saying(&store, &after, AdmitMode::Answer, None).await;
    assert_eq!(
        (remembered.language, remembered.menu),
        (Some(Language::Pt), None)
    );
}

#[tokio::test]
async fn pacing_keeps_a_number_at_its_configured_rate_across_replicas() {
    let redis = RedisServer::start();
    let limits = PacingLimits {
        per_number_per_sec: 300,
        pair_interval: Duration::ZERO,
        pair_burst: 1,
    };
    // Four replicas, one Redis: 400 sends reserved at once, each to its own recipient.
    let mut replicas = Vec::new();
    for r in 0..4 {
        let pacer = RedisPacer::new(client(&redis).await, Keys::new("p", 8), limits);
        replicas.push(tokio::spawn(async move {
            let mut slots = Vec::new();
            for i in 0..100 {
                let wait = pacer
                    .reserve(PNID, &format!("+{r}{i}"))
                    .await
                    .expect("pace");
                slots.push(std::time::Instant::now() + wait);
            }
            slots
        }));
    }
    let mut slots = Vec::new();
    for replica in replicas {
        slots.extend(replica.await.expect("replica"));
    }
    slots.sort();
    // The slots Redis handed out, not sends timed here: no second holds more than the rate
    // and its burst of a twentieth, within Meta's tenth (slack for the calls' own latency)...
    let second = Duration::from_secs(1);
    let busiest = (0..slots.len())
        .map(|i| {
            slots[i..]
                .iter()
                .take_while(|t| **t < slots[i] + second)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!((300..=330).contains(&busiest), "busiest second: {busiest}");
    // ...and past the burst they follow at the rate: 385 more slots over about 1.28 s.
    let span = slots[slots.len() - 1]
        .saturating_duration_since(slots[14])
        .as_secs_f64();
    let rate = 385.0 / span;
    assert!(
        (285.0..=305.0).contains(&rate),
        "{rate:.1}/s over {span:.3} s"
    );
}
