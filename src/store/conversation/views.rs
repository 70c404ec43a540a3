//! Reading conversations for the admin API, the CLI and the console: one, a page, the waiting ones, summaries, a search.

use super::*;

impl ConversationStore {
    /// The kept turns of a conversation, oldest first, with its TTL; `None` when it does not
    /// exist (never started, expired or deleted).
    pub async fn get(
        &self,
        pnid: &PhoneNumberId,
        user: &UserId,
    ) -> Result<Option<ConversationView>> {
        let keys = self.keys_of(pnid, user);
        let pipeline = self.client.pipeline();
        let _: () = pipeline.hgetall(&keys[0]).await?;
        let _: () = pipeline.lrange(&keys[1], 0, -1).await?;
        let _: () = pipeline.ttl(&keys[0]).await?;
        let (fields, turns, ttl): (HashMap<String, String>, Vec<String>, i64) =
            pipeline.all().await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let turns = turns
            .iter()
            .map(|raw| decode_turn(raw))
            .collect::<Result<Vec<Turn>>>()?;
        let number = |name: &str| fields.get(name).and_then(|s| s.parse::<i64>().ok());
        let now = unix_ms();
        let until = number(field::HUMAN_UNTIL).filter(|until| *until > now);
        let other = fields.get(field::OTHER_APP).is_some_and(|o| !o.is_empty());
        let last_user_ms = number(field::LAST_USER);
        let window_open_until_ms = last_user_ms.map(|at| at + WINDOW_MS);
        Ok(Some(ConversationView {
            phone_number_id: pnid.to_string(),
            user: user.as_str().to_string(),
            profile_name: fields.get(field::NAME).cloned(),
            turns,
            count: number(field::TURNS).unwrap_or(0).max(0) as u64,
            ttl_secs: ttl,
            created_ms: number(field::CREATED),
            updated_ms: number(field::UPDATED),
            last_failure: fields
                .get(field::LAST_FAILURE)
                .and_then(|s| serde_json::from_str(s).ok()),
            handoff: HandoffView {
                owner: Owner::of(other, until.is_some()),
                until_ms: until,
                info: until
                    .and(fields.get(field::HUMAN_INFO))
                    .and_then(|s| serde_json::from_str(s).ok()),
            },
            last_user_ms,
            last_user_message: fields.get(field::LAST_USER_MESSAGE).cloned(),
            window_open_until_ms,
            window_open: window_open_until_ms.is_some_and(|until| until > now),
        }))
    }

    /// Deletes a conversation (operators). Returns whether it existed.
    pub async fn delete(&self, pnid: &PhoneNumberId, user: &UserId) -> Result<bool> {
        let partition = self.keys.partition(pnid, user);
        let pipeline = self.client.pipeline();
        let _: () = pipeline.del(self.keys_of(pnid, user)).await?;
        let _: () = pipeline
            .zrem(
                self.keys.with_person(partition),
                format!("{pnid}:{}", user.as_str()),
            )
            .await?;
        let (deleted, _): (i64, i64) = pipeline.all().await?;
        Ok(deleted > 0)
    }

    /// Every conversation a person has now (see [`waiting_page`](Self::waiting_page)).
    pub async fn waiting(&self) -> Result<Vec<Waiting>> {
        Ok(self.waiting_page(0, usize::MAX, None).await?.0)
    }

    /// Conversations a person has now, across all partitions, the longest-held first (the
    /// handoff that ends first): `limit` of them after the first `offset`, and how many there
    /// are in all. One bounded sorted-set read and one count per partition, concurrently: each
    /// partition is its own Cluster slot, and no partition is read past `offset + limit`.
    pub async fn waiting_page(
        &self,
        offset: usize,
        limit: usize,
        only: Option<&(dyn Fn(&str) -> bool + Sync)>,
    ) -> Result<(Vec<Waiting>, u64)> {
        let now = unix_ms() as f64;
        // Filtered, the page and the total are of what passes: every member is read (people
        // have these conversations, so there are as many as people can hold).
        let wanted = match only {
            Some(_) => i64::MAX,
            None => i64::try_from(offset.saturating_add(limit)).unwrap_or(i64::MAX),
        };
        let reads = (0..self.keys.partitions()).map(|partition| {
            let key = self.keys.with_person(partition);
            async move {
                let members: Vec<(String, f64)> = self
                    .client
                    .zrangebyscore(&key, now, f64::INFINITY, true, Some((0, wanted)))
                    .await?;
                let count: u64 = self.client.zcount(&key, now, f64::INFINITY).await?;
                Ok::<_, StoreError>((members, count))
            }
        });
        let mut waiting: Vec<Waiting> = Vec::new();
        let mut total = 0u64;
        for read in futures_util::future::join_all(reads).await {
            let (members, count) = read?;
            if only.is_none() {
                total += count;
            }
            waiting.extend(members.into_iter().filter_map(|(member, until)| {
                let (pnid, user) = member.split_once(':')?;
                if only.is_some_and(|only| !only(pnid)) {
                    return None;
                }
                Some(Waiting {
                    conversation: ConversationRef {
                        phone_number_id: pnid.to_string(),
                        user: user.to_string(),
                    },
                    until_ms: until as i64,
                })
            }));
        }
        waiting.sort_by(|a, b| {
            a.until_ms
                .cmp(&b.until_ms)
                .then_with(|| a.conversation.user.cmp(&b.conversation.user))
        });
        if only.is_some() {
            total = u64::try_from(waiting.len()).unwrap_or(u64::MAX);
        }
        let waiting = waiting.into_iter().skip(offset).take(limit).collect();
        Ok((waiting, total))
    }

    /// The summaries of `conversations` (their hashes only), in the same order; conversations
    /// that no longer exist (expired, deleted) or have invalid ids are left out.
    pub async fn summaries(
        &self,
        conversations: &[ConversationRef],
    ) -> Result<Vec<ConversationSummary>> {
        let reads = conversations.iter().filter_map(|c| {
            let pnid = PhoneNumberId::parse(&c.phone_number_id)?;
            let user = UserId::parse(&c.user)?;
            let key = self.keys_of(&pnid, &user).swap_remove(0);
            Some(async move {
                let fields: Vec<Option<String>> = self
                    .client
                    .hmget(
                        key,
                        vec![
                            field::NAME,
                            field::HUMAN_UNTIL,
                            field::HUMAN_INFO,
                            field::OTHER_APP,
                            field::UPDATED,
                            field::LAST_USER,
                            field::CREATED,
                        ],
                    )
                    .await?;
                Ok::<_, StoreError>((pnid, user, fields))
            })
        });
        let now = unix_ms();
        let mut out = Vec::new();
        for read in futures_util::future::join_all(reads).await {
            let (pnid, user, fields) = read?;
            let get = |i: usize| fields.get(i).cloned().flatten().filter(|v| !v.is_empty());
            let number = |i: usize| get(i).and_then(|v| v.parse::<i64>().ok());
            if get(4).is_none() && get(6).is_none() {
                // Neither updated nor created: the hash is gone.
                continue;
            }
            let until = number(1).filter(|until| *until > now);
            let info: Option<serde_json::Value> = until
                .and(get(2))
                .and_then(|raw| serde_json::from_str(&raw).ok());
            out.push(ConversationSummary {
                phone_number_id: pnid.to_string(),
                user: user.as_str().to_string(),
                profile_name: get(0),
                owner: Owner::of(get(3).is_some(), until.is_some()),
                until_ms: until,
                since_ms: info
                    .as_ref()
                    .and_then(|i| i.get("since"))
                    .and_then(serde_json::Value::as_i64),
                reason: info
                    .as_ref()
                    .and_then(|i| i.get("reason"))
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string),
                updated_ms: number(4),
                last_user_ms: number(5),
            });
        }
        Ok(out)
    }

    /// One page of active conversations (SCAN, never KEYS). Start with `cursor = None`. On a
    /// Cluster the cursor also names the primary being scanned (`<node>:<cursor>`).
    pub async fn list(&self, cursor: Option<&str>, count: u32) -> Result<ConversationPage> {
        self.search(cursor, count, None).await
    }

    /// Like [`list`](Self::list), only conversations whose user id starts with `user_prefix`
    /// (a whole id matches exactly; ids hold no glob characters, [`UserId::parse`]).
    pub async fn search(
        &self,
        cursor: Option<&str>,
        count: u32,
        user_prefix: Option<&UserId>,
    ) -> Result<ConversationPage> {
        let pattern = match user_prefix {
            Some(user) => format!("{{{}:*}}:conv:*:{}*", self.keys.prefix(), user.as_str()),
            None => format!("{{{}:*}}:conv:*", self.keys.prefix()),
        };
        if !self.client.is_clustered() {
            let (next, keys) = scan(&self.client, cursor.unwrap_or("0"), &pattern, count).await?;
            return Ok(ConversationPage {
                conversations: keys
                    .iter()
                    .filter_map(|k| parse_conversation_key(k))
                    .collect(),
                next_cursor: (next != "0").then_some(next),
            });
        }
        let mut nodes = self
            .client
            .cached_cluster_state()
            .map(|state| state.unique_primary_nodes())
            .unwrap_or_default();
        nodes.sort_by_key(|n| n.to_string());
        let (mut node, mut node_cursor) = match cursor.and_then(|c| c.split_once(':')) {
            Some((n, c)) => (n.parse::<usize>().unwrap_or(usize::MAX), c.to_string()),
            None => (0, "0".to_string()),
        };
        let Some(server) = nodes.get(node) else {
            return Ok(ConversationPage {
                conversations: Vec::new(),
                next_cursor: None,
            });
        };
        let (next, keys) = scan(
            &self.client.with_cluster_node(server.clone()),
            &node_cursor,
            &pattern,
            count,
        )
        .await?;
        if next == "0" {
            node += 1;
            node_cursor = "0".into();
        } else {
            node_cursor = next;
        }
        Ok(ConversationPage {
            conversations: keys
                .iter()
                .filter_map(|k| parse_conversation_key(k))
                .collect(),
            next_cursor: (node < nodes.len()).then(|| format!("{node}:{node_cursor}")),
        })
    }
}

/// A raw SCAN, so the cursor can travel through an HTTP API (fred's scan streams keep it).
async fn scan<C: ClientLike>(
    client: &C,
    cursor: &str,
    pattern: &str,
    count: u32,
) -> Result<(String, Vec<String>)> {
    let command = CustomCommand::new_static("SCAN", ClusterHash::Random, false);
    Ok(client
        .custom(
            command,
            vec![
                cursor.to_string(),
                "MATCH".into(),
                pattern.to_string(),
                "COUNT".into(),
                count.max(1).to_string(),
            ],
        )
        .await?)
}

/// `{prefix:p}:conv:<pnid>:<user>` → its parts.
pub(super) fn parse_conversation_key(key: &str) -> Option<ConversationRef> {
    let rest = key.split_once("}:conv:")?.1;
    let (pnid, user) = rest.split_once(':')?;
    Some(ConversationRef {
        phone_number_id: pnid.to_string(),
        user: user.to_string(),
    })
}
