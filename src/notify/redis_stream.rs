//! Domain events appended to a Redis stream (`XADD`), one entry per event with the fields
//! `topic`, `id`, `version` and `position`, in outbox order, the stream capped near `max_len`
//! entries (`MAXLEN ~`). Each entry's id is the event's outbox position (`order`), so an event
//! offered twice (a batch published again after a crash, or by an instance whose lease ran out
//! while it published) is taken once: what is not newer than the stream's last entry is
//! skipped, and a batch that loses the race to another publisher is checked again. One `MULTI`
//! round trip per batch.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{EventSink, PublishedEvent, SinkError};

pub struct RedisStreamSink {
    connection: ConnectionManager,
    stream: String,
    max_len: usize,
}

fn unavailable(error: redis::RedisError) -> SinkError {
    SinkError::Unavailable(error.to_string())
}

impl RedisStreamSink {
    /// Connects to `url` (`redis://` or `rediss://`; `ca_pem` as for the cache).
    pub async fn connect(
        url: &str,
        ca_pem: Option<Vec<u8>>,
        stream: &str,
        max_len: usize,
    ) -> Result<RedisStreamSink, SinkError> {
        let client = match ca_pem {
            Some(root_cert) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            ),
            None => redis::Client::open(url),
        }
        .map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let connection = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        Ok(RedisStreamSink {
            connection,
            stream: stream.to_string(),
            max_len: max_len.max(1),
        })
    }
}

impl RedisStreamSink {
    /// The id of the stream's last entry (`None`: an empty or missing stream).
    async fn last_id(&self) -> Result<Option<(u64, u64)>, SinkError> {
        let mut connection = self.connection.clone();
        let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(&self.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(last.first().and_then(|(id, _)| {
            let (ms, seq) = id.split_once('-')?;
            Some((ms.parse().ok()?, seq.parse().ok()?))
        }))
    }

    /// Appends the events newer than the stream's last entry. An entry another publisher added
    /// meanwhile makes its own `XADD` fail (its id is not newer) while the later ones go in, so
    /// the stream stays in order with each event once; the error says to look again.
    async fn append_newer(&self, events: &[PublishedEvent]) -> Result<(), redis::RedisError> {
        let last = self
            .last_id()
            .await
            .map_err(|SinkError::Unavailable(what)| {
                redis::RedisError::from((redis::ErrorKind::Io, "XREVRANGE failed", what))
            })?;
        let newer: Vec<&PublishedEvent> = events
            .iter()
            .filter(|event| last.is_none_or(|last| event.order > last))
            .collect();
        if newer.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        for event in newer {
            pipeline
                .cmd("XADD")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_len)
                .arg(format!("{}-{}", event.order.0, event.order.1))
                .arg("topic")
                .arg(&event.topic)
                .arg("id")
                .arg(&event.entity_id)
                .arg("version")
                .arg(event.version)
                .arg("position")
                .arg(&event.position);
            if let Some((name, data)) = &event.event {
                pipeline.arg("event").arg(name).arg("data").arg(data);
            }
            pipeline.ignore();
        }
        let mut connection = self.connection.clone();
        pipeline.query_async::<()>(&mut connection).await
    }
}

#[async_trait]
impl EventSink for RedisStreamSink {
    async fn publish(&self, events: &[PublishedEvent]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        match self.append_newer(events).await {
            Ok(()) => Ok(()),
            // Another publisher appended some of them between the check and the append: check
            // again.
            Err(error) if error.to_string().contains("equal or smaller") => {
                self.append_newer(events).await.map_err(unavailable)
            }
            Err(error) => Err(unavailable(error)),
        }
    }
}

/// Reading a stream back, for tests.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    /// The stream's entries, oldest first, each as its (field, value) list.
    pub async fn stream_entries(url: &str, stream: &str) -> Vec<Vec<(String, String)>> {
        let client = redis::Client::open(url).expect("url");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis");
        let range: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query_async(&mut connection)
            .await
            .expect("xrange");
        range.into_iter().map(|(_, fields)| fields).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::stream_entries as entries;
    use super::*;

    fn event(id: &str, version: u64, position: &str) -> PublishedEvent {
        PublishedEvent {
            topic: "user".into(),
            entity_id: id.into(),
            version,
            position: position.into(),
            order: (u64::from_str_radix(position, 16).expect("hex"), 0),
            event: None,
        }
    }

    #[tokio::test]
    async fn events_become_stream_entries_in_order_with_their_fields() {
        let Some(url) = crate::test_tiers::redis() else {
            return;
        };
        let stream = format!("userorg-test:events:{}", uuid::Uuid::new_v4().simple());
        let sink = RedisStreamSink::connect(&url, None, &stream, 1000)
            .await
            .expect("connect");
        sink.publish(&[event("u1", 1, "01"), event("u2", 3, "02")])
            .await
            .expect("publish");
        let mut merged = event("u1", 2, "03");
        merged.event = Some(("user.merged".into(), r#"{"toAccountId":"u9"}"#.into()));
        sink.publish(&[merged]).await.expect("publish");
        let field = |id: &str, version: &str, position: &str| {
            vec![
                ("topic".to_string(), "user".to_string()),
                ("id".to_string(), id.to_string()),
                ("version".to_string(), version.to_string()),
                ("position".to_string(), position.to_string()),
            ]
        };
        let mut named = field("u1", "2", "03");
        named.push(("event".to_string(), "user.merged".to_string()));
        named.push(("data".to_string(), r#"{"toAccountId":"u9"}"#.to_string()));
        assert_eq!(
            entries(&url, &stream).await,
            [
                field("u1", "1", "01"),
                field("u2", "3", "02"),
                named.clone()
            ]
        );
        // Offered again (a batch published twice, an older holder late): taken once.
        sink.publish(&[
            event("u2", 3, "02"),
            event("u1", 2, "03"),
            event("u3", 1, "04"),
        ])
        .await
        .expect("publish again");
        sink.publish(&[event("u1", 1, "01")])
            .await
            .expect("a late one");
        assert_eq!(
            entries(&url, &stream).await,
            [
                field("u1", "1", "01"),
                field("u2", "3", "02"),
                named,
                field("u3", "1", "04")
            ],
            "each event once, in order"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let refused =
            RedisStreamSink::connect(&format!("redis://127.0.0.1:{port}/"), None, "s", 10).await;
        assert!(matches!(refused, Err(SinkError::Unavailable(_))));
    }
}
