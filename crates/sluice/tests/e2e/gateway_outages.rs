//! `sluice gateway` when things fail, on a private broker: the broker down for 30 s under load
//! (every acknowledged record reaches the topic exactly once), the broker frozen with produce
//! requests in its sockets (records in doubt that it writes after thawing are not sent
//! again), and a kill -9 of the gateway while it spools, with a torn tail left in the spool
//! (every acknowledged record still arrives, and the torn tail is cut and counted).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

use crate::gateway::{Gateway, SHOP_KEY, event, key_entry, markers};
use crate::helpers::*;
use crate::kafka::read_all_at;
use crate::private::PrivateServices;

/// Records per request of the load.
const BATCH: usize = 100;

fn pipeline(dir: &std::path::Path, topic: &str) -> std::path::PathBuf {
    let file = write_pipeline(
        dir,
        topic,
        &unique("group"),
        &dir.join("lake").display().to_string(),
        "{}",
    );
    extend_pipeline(
        &file,
        "",
        &format!(
            "[gateway]\nproduce_timeout = \"1s\"\nspool = {{ dir = \"{}\" }}\n{}",
            dir.join("spool").display(),
            key_entry("shop", SHOP_KEY, r#"["*"]"#)
        ),
    );
    file
}

/// What senders were told about their records.
#[derive(Default)]
struct Acks {
    /// Markers of records answered 200 or 202.
    acknowledged: Vec<String>,
    /// Requests answered 202 (spooled).
    spooled_requests: usize,
    /// Markers of records whose request failed or was refused (they may or may not be stored).
    unacknowledged: Vec<String>,
}

/// Sends batches from `senders` threads until `stop`, recording what was acknowledged.
fn load(
    gateway_url: String,
    senders: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Acks>>, Vec<std::thread::JoinHandle<()>>) {
    let acks = Arc::new(Mutex::new(Acks::default()));
    let threads = (0..senders)
        .map(|sender| {
            let (acks, stop, url) = (acks.clone(), stop.clone(), gateway_url.clone());
            std::thread::spawn(move || {
                let client = Client::builder()
                    .timeout(Duration::from_secs(20))
                    .build()
                    .unwrap();
                let mut request = 0;
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<String> = (0..BATCH)
                        .map(|i| format!("s{sender}-r{request}-{i}"))
                        .collect();
                    let body: String = batch.iter().map(|m| format!("{}\n", event(m))).collect();
                    let answer = client
                        .post(format!("{url}/v1/streams/sensor_events/events"))
                        .bearer_auth(SHOP_KEY)
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send();
                    let status = answer.as_ref().map(|a| a.status().as_u16()).unwrap_or(0);
                    let mut acks = acks.lock().unwrap();
                    match status {
                        200 | 202 => {
                            let body: Value = answer.unwrap().json().unwrap();
                            assert_eq!(body["accepted"], BATCH, "{body}");
                            acks.acknowledged.extend(batch);
                            acks.spooled_requests += usize::from(status == 202);
                        }
                        _ => acks.unacknowledged.extend(batch),
                    }
                    drop(acks);
                    request += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    (acks, threads)
}

fn wait_until_spool_empty(gateway: &Gateway, client: &Client, limit: Duration) {
    let started = Instant::now();
    loop {
        let pending = gateway.metric(client, "sluice_gateway_spool_pending_batches");
        if pending == 0.0 {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{pending} batches still spooled after {limit:?}:\n{}",
            gateway.member.logged()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Reads the topic: every acknowledged marker exactly once, unacknowledged ones at most once,
/// nothing else. Returns what it read.
fn assert_exactly_once(
    services: &PrivateServices,
    topic: &str,
    acks: &Acks,
) -> BTreeMap<String, usize> {
    let read = read_all_at(&services.brokers(), topic, Duration::from_secs(5));
    let mut per_partition: BTreeMap<i32, usize> = BTreeMap::new();
    for record in &read {
        *per_partition.entry(record.partition).or_default() += 1;
    }
    let stored = markers(&read);
    let doubled: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        doubled.is_empty(),
        "records in the topic more than once: {doubled:?}"
    );
    let missing: Vec<_> = acks
        .acknowledged
        .iter()
        .filter(|m| !stored.contains_key(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged records missing from the topic, e.g. {:?}; records read per partition: {per_partition:?}",
        missing.len(),
        acks.acknowledged.len(),
        &missing[..missing.len().min(20)]
    );
    let sent: std::collections::HashSet<&String> = acks
        .acknowledged
        .iter()
        .chain(&acks.unacknowledged)
        .collect();
    let known = stored.keys().all(|m| sent.contains(m));
    assert!(known, "the topic holds records nobody sent");
    stored
}

/// A private broker (SQLite, so it can restart) with a 4-partition topic, and a pipeline file
/// whose gateway sends to it.
fn private_setup(
    name: &str,
) -> (
    std::path::PathBuf,
    PrivateServices,
    String,
    std::path::PathBuf,
) {
    let dir = test_dir(name);
    let services = PrivateServices::new(&dir);
    services.start("kafka");
    let topic = unique(name);
    run_ok(
        services
            .sluice()
            .args(["topics", "create", &topic, "--partitions", "4"]),
        Duration::from_secs(60),
    );
    let file = pipeline(&dir, &topic);
    (dir, services, topic, file)
}

/// A gateway on a private broker with three senders loading it.
struct UnderLoad {
    services: PrivateServices,
    topic: String,
    gateway: Gateway,
    client: Client,
    acks: Arc<Mutex<Acks>>,
    stop: Arc<AtomicBool>,
    senders: Vec<std::thread::JoinHandle<()>>,
}

impl UnderLoad {
    fn start(name: &str) -> Self {
        let (dir, services, topic, file) = private_setup(name);
        let gateway = Gateway::start(
            services.sluice().args(["gateway", "--pipeline"]).arg(&file),
            free_port(),
            dir.join("gateway.log"),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (acks, senders) = load(gateway.url.clone(), 3, stop.clone());
        Self {
            services,
            topic,
            gateway,
            client: Client::new(),
            acks,
            stop,
            senders,
        }
    }

    fn acknowledged(&self) -> usize {
        self.acks.lock().unwrap().acknowledged.len()
    }

    /// Stops the senders and waits for the spool to empty.
    fn settle(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for sender in self.senders.drain(..) {
            sender.join().unwrap();
        }
        wait_until_spool_empty(&self.gateway, &self.client, Duration::from_secs(120));
    }
}

#[test]
fn the_broker_down_for_30_s_under_load_loses_and_doubles_no_acknowledged_record() {
    let mut run = UnderLoad::start("gateway_broker_down");
    std::thread::sleep(Duration::from_secs(4));
    let before = run.acknowledged();
    run.services.stop("kafka");
    std::thread::sleep(Duration::from_secs(30));
    let during = run.acknowledged() - before;
    run.services.start("kafka");
    std::thread::sleep(Duration::from_secs(6));
    run.settle();

    let acks = run.acks.lock().unwrap();
    assert!(before > 0, "nothing acknowledged before the outage");
    assert!(
        during > 0,
        "nothing acknowledged (spooled) while the broker was down"
    );
    assert!(acks.spooled_requests > 0);
    let stored = assert_exactly_once(&run.services, &run.topic, &acks);
    eprintln!(
        "broker down 30 s: {} records acknowledged ({} requests spooled, {during} records during the outage), {} unacknowledged, {} in the topic",
        acks.acknowledged.len(),
        acks.spooled_requests,
        acks.unacknowledged.len(),
        stored.len()
    );
    run.gateway.member.stop(Duration::from_secs(30));
}

/// A frozen broker (SIGSTOP) keeps the produce requests sent to it unanswered in its sockets;
/// the gateway replaces its producer, and those records are in doubt. Thawed, the broker
/// writes them: the gateway must find them there instead of sending them again.
#[test]
fn records_in_doubt_that_a_frozen_broker_writes_after_thawing_are_not_sent_again() {
    let mut run = UnderLoad::start("gateway_broker_frozen");
    std::thread::sleep(Duration::from_secs(3));
    run.services.signal("kafka", "STOP");
    // Three failed probes a second apart replace the producer.
    std::thread::sleep(Duration::from_secs(8));
    run.services.signal("kafka", "CONT");
    std::thread::sleep(Duration::from_secs(4));
    run.settle();

    let in_doubt = |outcome: &str| {
        run.gateway.metric(
            &run.client,
            &format!("sluice_gateway_in_doubt_records_total{{outcome=\"{outcome}\"}}"),
        )
    };
    let (landed, resent) = (in_doubt("landed"), in_doubt("resent"));
    let acks = run.acks.lock().unwrap();
    let stored = assert_exactly_once(&run.services, &run.topic, &acks);
    eprintln!(
        "broker frozen 8 s: {} records acknowledged, {} in the topic; in doubt: {landed} found in the topic, {resent} sent again",
        acks.acknowledged.len(),
        stored.len()
    );
    assert!(
        landed > 0.0,
        "no record in doubt was found in the topic ({resent} sent again): the freeze did not test the search\n{}",
        run.gateway.member.logged()
    );
    run.gateway.member.stop(Duration::from_secs(30));
}

#[test]
fn a_kill_9_while_spooling_then_a_torn_tail_loses_no_acknowledged_record() {
    let (dir, services, topic, file) = private_setup("gateway_kill9");
    services.stop("kafka");
    let port = free_port();
    let gateway = Gateway::start(
        services.sluice().args(["gateway", "--pipeline"]).arg(&file),
        port,
        dir.join("gateway.log"),
    );

    // Kafka is down: everything goes to the spool; the gateway dies mid-stream.
    let stop = Arc::new(AtomicBool::new(false));
    let (acks, senders) = load(gateway.url.clone(), 2, stop.clone());
    std::thread::sleep(Duration::from_secs(4));
    gateway.member.kill();
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().unwrap();
    }
    // What a crash in the middle of an append leaves: half a frame at the end of the log.
    let newest = std::fs::read_dir(dir.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .expect("a spool segment");
    let mut segment = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap();
    segment
        .write_all(&[200, 1, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
        .unwrap();
    drop(segment);

    services.start("kafka");
    let gateway = Gateway::start(
        services.sluice().args(["gateway", "--pipeline"]).arg(&file),
        port,
        dir.join("gateway-2.log"),
    );
    let client = Client::new();
    wait_until_spool_empty(&gateway, &client, Duration::from_secs(120));
    assert_eq!(
        gateway.metric(&client, "sluice_gateway_spool_torn_tails_total"),
        1.0
    );
    assert!(
        gateway.member.logged().contains("torn"),
        "{}",
        gateway.member.logged()
    );

    let acks = acks.lock().unwrap();
    assert!(acks.spooled_requests > 0 && !acks.acknowledged.is_empty());
    // The broker was down for the whole first run, so nothing can have reached it twice.
    let stored = assert_exactly_once(&services, &topic, &acks);
    eprintln!(
        "kill -9 while spooling: {} records acknowledged, {} in the topic",
        acks.acknowledged.len(),
        stored.len()
    );
    gateway.member.stop(Duration::from_secs(30));
}
