//! Aggregates as the fill drives them, and the event rows their decisions become.

use anyhow::{Context, anyhow};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use rand::Rng;
use serde_json::json;
use std::collections::BTreeMap;
use tokio::sync::mpsc::Sender;
use uuid::Uuid;

/// Event rows column by column, the shape the `UNNEST` insert binds.
#[derive(Debug, Default)]
pub struct Batch {
    pub aggregate_types: Vec<String>,
    pub aggregate_ids: Vec<String>,
    pub sequences: Vec<i64>,
    pub event_types: Vec<String>,
    pub event_versions: Vec<String>,
    pub payloads: Vec<String>,
    pub metadata: Vec<String>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.sequences.len()
    }
}

/// Collects rows into batches and hands full ones to the writer.
///
/// Batches leave in the order their events were decided, and the writer keeps that order, so
/// the feed order of the filled table is the order the histories were made in.
pub struct Recorder {
    batch: Batch,
    batch_size: usize,
    writer: Sender<Batch>,
    counts: BTreeMap<&'static str, u64>,
    /// Events recorded so far.
    pub total: u64,
}

impl Recorder {
    pub fn new(batch_size: usize, writer: Sender<Batch>) -> Self {
        Self {
            batch: Batch::default(),
            batch_size: batch_size.max(1),
            writer,
            counts: BTreeMap::new(),
            total: 0,
        }
    }

    /// Serializes like cqrs-es's `SerializedEvent`: through `serde_json::Value`, so object keys
    /// come out in the same order as the service's own appends.
    fn record<A: Aggregate>(
        &mut self,
        id: &str,
        sequence: i64,
        event: &A::Event,
        metadata: &str,
    ) -> anyhow::Result<()> {
        let payload = serde_json::to_value(event).context("serializing an event")?;
        let batch = &mut self.batch;
        batch.aggregate_types.push(A::TYPE.to_owned());
        batch.aggregate_ids.push(id.to_owned());
        batch.sequences.push(sequence);
        batch.event_types.push(event.event_type());
        batch.event_versions.push(event.event_version());
        batch.payloads.push(payload.to_string());
        batch.metadata.push(metadata.to_owned());
        *self.counts.entry(A::TYPE).or_default() += 1;
        self.total += 1;
        if self.batch.len() >= self.batch_size {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the last rows and lets the writer go; returns the events recorded per aggregate type.
    ///
    /// # Errors
    /// The writer stopped.
    pub fn finish(mut self) -> anyhow::Result<BTreeMap<&'static str, u64>> {
        self.flush()?;
        Ok(self.counts)
    }

    /// Sends the pending rows to the writer; blocks while the writer is behind.
    fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.len() == 0 {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.writer
            .blocking_send(batch)
            .map_err(|_| anyhow!("the writer stopped"))
    }
}

/// One aggregate instance, its state and its last sequence number.
pub struct Tracked<A: Aggregate> {
    pub id: String,
    pub state: A,
    sequence: i64,
}

impl<A> Tracked<A>
where
    A: Aggregate<Services = ()>,
    A::Error: Send + Sync + 'static,
{
    pub fn new(id: String) -> Self {
        Self {
            id,
            state: A::default(),
            sequence: 0,
        }
    }

    /// Decides `command` with the aggregate's own `handle` and records what it emits, so every
    /// row is an event the service would have stored (threshold events included). Returns the
    /// number of events.
    ///
    /// # Errors
    /// A refusal means the generator asked for something the domain forbids: a bug here, not
    /// data to write, so it stops the fill.
    pub fn execute(
        &mut self,
        command: A::Command,
        metadata: &str,
        out: &mut Recorder,
    ) -> anyhow::Result<usize> {
        let sink = EventSink::default();
        // `handle` never awaits anything but the sink's uncontended lock.
        futures::executor::block_on(self.state.handle(command, &(), &sink))
            .with_context(|| format!("{} {} refused a command", A::TYPE, self.id))?;
        let events = futures::executor::block_on(sink.collect());
        for event in &events {
            self.sequence += 1;
            out.record::<A>(&self.id, self.sequence, event, metadata)?;
        }
        Ok(events.len())
    }
}

/// A v4 UUID from the seeded generator, so reruns with one seed write identical rows.
pub fn uuid(rng: &mut impl Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

/// The metadata of a command that is a request of its own (an admin's), not part of a purchase.
pub fn request_metadata(rng: &mut impl Rng) -> String {
    let correlation_id = uuid(rng);
    metadata(rng, correlation_id)
}

/// The metadata of one command, as the command bus stores it.
pub fn metadata(rng: &mut impl Rng, correlation_id: Uuid) -> String {
    let request_id = uuid(rng);
    let causation_id = uuid(rng);
    json!({
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "actor": "bench",
        "request_id": request_id,
    })
    .to_string()
}
