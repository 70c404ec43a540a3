//! Media ids of files wabot uploaded to Meta, per business number and file, kept until shortly
//! before Meta forgets them: the same file sent to many users is uploaded once.

use fred::prelude::{Client, Expiration, KeysInterface};

use super::error::Result;
use super::keys::Keys;
use crate::domain::PhoneNumberId;

/// Meta keeps uploaded media for 30 days; a day less leaves room for a send in flight.
pub const MEDIA_ID_TTL_SECS: i64 = 29 * 24 * 3600;

#[derive(Clone)]
pub struct MediaIds {
    client: Client,
    keys: Keys,
}

impl MediaIds {
    pub fn new(client: Client, keys: Keys) -> MediaIds {
        MediaIds { client, keys }
    }

    /// The media id of `source` (a digest naming the file) for `pnid`, when uploaded.
    pub async fn get(&self, pnid: &PhoneNumberId, source: &str) -> Result<Option<String>> {
        Ok(self.client.get(self.keys.media_id(pnid, source)).await?)
    }

    pub async fn put(&self, pnid: &PhoneNumberId, source: &str, media_id: &str) -> Result<()> {
        let _: () = self
            .client
            .set(
                self.keys.media_id(pnid, source),
                media_id,
                Some(Expiration::EX(MEDIA_ID_TTL_SECS)),
                None,
                false,
            )
            .await?;
        Ok(())
    }
}
