//! The producer behind `sluice produce` (and later the gateway): idempotent with acks=all, so a
//! record that is acknowledged is on every in-sync replica exactly once, retries included.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use crate::client::{BasicContext, metadata_of};
use crate::{ClientOptions, KafkaError};

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Its partition.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

/// An idempotent, acks=all producer to one topic.
pub struct Producer {
    inner: FutureProducer<BasicContext>,
    topic: String,
}

impl Producer {
    /// Connects and checks that `topic` exists, so a wrong address or topic fails at once.
    /// Blocking (metadata request): call from a blocking context or at start-up.
    pub fn connect(options: &ClientOptions, topic: &str) -> Result<Self, KafkaError> {
        let inner: FutureProducer<BasicContext> = options.create(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", "200000"),
            // Give up on a record after this long rather than hang on a dead cluster.
            ("message.timeout.ms", "60000"),
        ])?;
        metadata_of(inner.client(), &options.brokers, Some(topic))?;
        Ok(Self {
            inner,
            topic: topic.to_string(),
        })
    }

    /// The topic records go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Hands one record to librdkafka, waiting only while its queue is full, and returns the
    /// acknowledgement to await. Many records may be in flight at once; librdkafka batches
    /// them and, being idempotent, keeps each partition's order.
    pub async fn enqueue(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<impl Future<Output = Result<Delivered, KafkaError>> + Send + 'static, KafkaError>
    {
        loop {
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).payload(payload);
            if let Some(key) = key {
                record = record.key(key);
            }
            match self.inner.send_result(record) {
                Ok(delivery) => {
                    let topic = self.topic.clone();
                    return Ok(async move {
                        match delivery.await {
                            Ok(Ok(d)) => Ok(Delivered {
                                partition: d.partition,
                                offset: d.offset,
                            }),
                            Ok(Err((source, _))) => Err(KafkaError::Produce { topic, source }),
                            Err(_) => Err(KafkaError::Produce {
                                topic,
                                source: rdkafka::error::KafkaError::Canceled,
                            }),
                        }
                    });
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    _,
                )) => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((source, _)) => {
                    return Err(KafkaError::Produce {
                        topic: self.topic.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Waits until every record sent has been acknowledged or failed.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner
            .flush(timeout)
            .map_err(|source| KafkaError::Produce {
                topic: self.topic.clone(),
                source,
            })
    }
}
