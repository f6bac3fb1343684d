//! Producer benchmark against one tansu broker: CPU time per message at a
//! fixed rate (10k msg/s, 1 KiB) and the maximum produce rate, for
//! `loadgen produce`, a minimal raw rdkafka loop (the limit: this very
//! binary, re-run as `produce raw BOOTSTRAP TOPIC COUNT RATE SIZE`) and a
//! Python confluent-kafka loop (what people script load with). All three
//! send the same messages (random payload, send-time header) with the same
//! `linger.ms`. Every producer runs as its own process; its CPU time is the
//! kernel's account of the waited-for child (getrusage RUSAGE_CHILDREN
//! before and after), its count of delivered messages is what it reports
//! acknowledged (and must equal the count asked for); the max rate is that
//! count over the process's wall time, start-up included. Prints a table
//! and the ratios against the targets.
//!
//! `cargo bench -p loadgen` (the test command installs tansu; the first
//! run makes a venv with confluent-kafka under the target dir). Knobs:
//! BENCH_REPS (3), BENCH_FIXED_SECS (10), BENCH_MAX_COUNT (1000000).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use loadgen::header::{SEND_TIME_HEADER, encode_send_time, wall_clock_ns};
use loadgen::payload::PayloadPool;
use nix::sys::resource::{UsageWho, getrusage};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use testkit::tansu::Tansu;

const SIZE: usize = 1024;
const FIXED_RATE: u64 = 10_000;
const PARTITIONS: u32 = 12;
const CONFLUENT_KAFKA: &str = "confluent-kafka==2.12.1";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("raw") {
        return raw_produce(&args[1..]);
    }
    if args.iter().any(|a| a == "--list") {
        // `cargo bench -- --list` and test discovery: nothing to list.
        return Ok(());
    }
    let Some(tansu) = Tansu::start_or_skip() else {
        return Ok(());
    };
    let reps = knob("BENCH_REPS", 3);
    let fixed_count = FIXED_RATE * knob("BENCH_FIXED_SECS", 10);
    let max_count = knob("BENCH_MAX_COUNT", 1_000_000);

    let mut producers = vec![Kind::Loadgen, Kind::Raw];
    match python_venv() {
        Ok(python) => producers.push(Kind::Python(python)),
        Err(e) => eprintln!("\n*** Python confluent-kafka skipped: {e:#} ***\n"),
    }
    println!(
        "tansu {} | {SIZE} B messages | {PARTITIONS} partitions | fixed rate {FIXED_RATE} msg/s x {fixed_count} | max rate x {max_count} | {reps} reps, medians",
        tansu.bootstrap()
    );

    let mut results: Vec<(String, Vec<Run>, Vec<Run>)> = producers
        .iter()
        .map(|k| (k.name().to_string(), Vec::new(), Vec::new()))
        .collect();
    for rep in 0..reps {
        // Interleaved, so drift in the machine's load hits every producer.
        for (i, kind) in producers.iter().enumerate() {
            let fixed = measure(&tansu, kind, fixed_count, FIXED_RATE, rep)?;
            let max = measure(&tansu, kind, max_count, 0, rep)?;
            println!(
                "rep {rep} {:<8} fixed: {:.2} us/msg ({:.0} msg/s) | max: {:.0} msg/s, {:.2} us/msg, broker {:.2} us/msg",
                kind.name(),
                fixed.cpu_us_per_msg(),
                fixed.rate(),
                max.rate(),
                max.cpu_us_per_msg(),
                max.broker_us_per_msg()
            );
            results[i].1.push(fixed);
            results[i].2.push(max);
        }
    }

    println!(
        "\n| producer | CPU per message at {FIXED_RATE} msg/s | achieved rate | max rate | CPU per message at max | broker CPU per message at max |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut summary = Vec::new();
    for (name, fixed, max) in &results {
        let cpu = median(fixed.iter().map(Run::cpu_us_per_msg));
        let rate = median(max.iter().map(Run::rate));
        println!(
            "| {name} | {cpu:.2} us | {:.0} msg/s | {rate:.0} msg/s | {:.2} us | {:.2} us |",
            median(fixed.iter().map(Run::rate)),
            median(max.iter().map(Run::cpu_us_per_msg)),
            median(max.iter().map(Run::broker_us_per_msg)),
        );
        summary.push((name.clone(), cpu, rate));
    }
    let get = |n: &str| {
        summary
            .iter()
            .find(|(name, ..)| name == n)
            .map(|(_, c, r)| (*c, *r))
    };
    println!();
    if let (Some((lg_cpu, lg_rate)), Some((raw_cpu, raw_rate))) = (get("loadgen"), get("raw")) {
        verdict("CPU/msg loadgen / raw", lg_cpu / raw_cpu, "<=", 1.1);
        verdict("max rate loadgen / raw", lg_rate / raw_rate, ">=", 0.9);
        if let Some((py_cpu, py_rate)) = get("python") {
            verdict("CPU/msg loadgen / python", lg_cpu / py_cpu, "<=", 0.5);
            println!("max rate loadgen / python: {:.2}", lg_rate / py_rate);
        }
    }
    Ok(())
}

fn verdict(what: &str, ratio: f64, op: &str, target: f64) {
    let met = if op == "<=" {
        ratio <= target
    } else {
        ratio >= target
    };
    println!(
        "{what}: {ratio:.2} (target {op} {target}) {}",
        if met { "MET" } else { "MISSED" }
    );
}

fn knob(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

enum Kind {
    Loadgen,
    Raw,
    Python(PathBuf),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Loadgen => "loadgen",
            Kind::Raw => "raw",
            Kind::Python(_) => "python",
        }
    }

    /// The process that sends `count` messages at `rate` (0: flat out).
    fn command(
        &self,
        bootstrap: &str,
        topic: &str,
        count: u64,
        rate: u64,
    ) -> anyhow::Result<Command> {
        let (count_s, rate_s, size_s) = (count.to_string(), rate.to_string(), SIZE.to_string());
        Ok(match self {
            Kind::Loadgen => {
                let rate = if rate == 0 {
                    loadgen::config::RATE_LIMIT.to_string()
                } else {
                    rate_s
                };
                let mut c = Command::new(env!("CARGO_BIN_EXE_loadgen"));
                c.arg("produce")
                    .env("KAFKA_BROKER", bootstrap)
                    .env("KAFKA_TOPIC", topic)
                    .env("TOPIC_PARTITIONS", PARTITIONS.to_string())
                    .env("MESSAGE_RATE_PER_SECOND", &rate)
                    .env("MIN_MESSAGE_RATE", &rate)
                    .env("MAX_MESSAGE_RATE", &rate)
                    .env("MESSAGE_SIZE_BYTES", &size_s)
                    .env("MESSAGE_LIMIT", &count_s)
                    // The same batching as the raw loop and Python.
                    .env("LINGER_MS", "5")
                    .env("METRICS_ADDR", "127.0.0.1:0")
                    .env("STATUS_DIR", std::env::temp_dir())
                    // info for the final "producer stopped" line.
                    .env("RUST_LOG", "info");
                c
            }
            Kind::Raw => {
                let mut c = Command::new(std::env::current_exe().context("own path")?);
                c.args(["raw", bootstrap, topic, &count_s, &rate_s, &size_s]);
                c
            }
            Kind::Python(python) => {
                let script =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python_produce.py");
                let mut c = Command::new(python);
                c.arg(script)
                    .args([bootstrap, topic, &count_s, &rate_s, &size_s]);
                c
            }
        })
    }
}

/// One producer run.
struct Run {
    delivered: u64,
    cpu: Duration,
    wall: Duration,
    broker_cpu: Duration,
}

impl Run {
    fn cpu_us_per_msg(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.delivered as f64
    }
    fn broker_us_per_msg(&self) -> f64 {
        self.broker_cpu.as_secs_f64() * 1e6 / self.delivered as f64
    }
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.wall.as_secs_f64()
    }
}

fn children_cpu() -> anyhow::Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage")?;
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    Ok(tv(usage.user_time()) + tv(usage.system_time()))
}

/// CPU time of a running process from /proc/PID/stat (utime + stime).
fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("read /proc stat")?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("parse /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as u64;
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

fn measure(tansu: &Tansu, kind: &Kind, count: u64, rate: u64, rep: u64) -> anyhow::Result<Run> {
    let topic = format!(
        "bench-{}-{}-{rep}",
        kind.name(),
        if rate == 0 { "max" } else { "fixed" }
    );
    tansu.create_topic(&topic, PARTITIONS)?;
    let mut cmd = kind.command(&tansu.bootstrap(), &topic, count, rate)?;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let cpu_before = children_cpu()?;
    let broker_before = process_cpu(tansu.pid())?;
    let started = Instant::now();
    let output = cmd.spawn().context("start producer")?.wait_with_output()?;
    let wall = started.elapsed();
    let cpu = children_cpu()? - cpu_before;
    let broker_cpu = process_cpu(tansu.pid())? - broker_before;
    if !output.status.success() {
        bail!(
            "{} exited with {}: {}",
            kind.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let delivered = acknowledged(kind, &output.stdout, &output.stderr)?;
    ensure!(
        delivered == count,
        "{} delivered {delivered} of {count} messages",
        kind.name()
    );
    // Free the broker's memory for the next run.
    tansu.delete_topic(&topic)?;
    Ok(Run {
        delivered,
        cpu,
        wall,
        broker_cpu,
    })
}

/// How many messages the producer says the broker acknowledged. (Not
/// the broker's high watermarks: tansu 0.6.0 reports them short by part of
/// the last batch of each partition.)
fn acknowledged(kind: &Kind, stdout: &[u8], stderr: &[u8]) -> anyhow::Result<u64> {
    let (text, marker) = match kind {
        // loadgen's last log line: "producer stopped: S sent, A acknowledged, F failed"
        Kind::Loadgen => (String::from_utf8_lossy(stderr), "acknowledged,"),
        // raw and python print "acked=A failed=F"
        _ => (String::from_utf8_lossy(stdout), ""),
    };
    let found = if marker.is_empty() {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("acked="))
            .map(str::to_string)
    } else {
        let words: Vec<&str> = text.split_whitespace().collect();
        words
            .windows(2)
            .rev()
            .find(|w| w[1] == marker)
            .map(|w| w[0].to_string())
    };
    found
        .with_context(|| format!("{} printed no acknowledged count:\n{text}", kind.name()))?
        .parse()
        .context("parse the acknowledged count")
}

/// A venv under the target dir with the pinned confluent-kafka, made once.
fn python_venv() -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| testkit::exe::workspace_root().join("target"));
    let venv = target.join("bench-venv");
    let python = venv.join("bin/python");
    let check = |python: &Path| {
        Command::new(python)
            .args(["-c", "import importlib.metadata as m, confluent_kafka, sys; sys.exit(m.version('confluent-kafka') != '2.12.1')"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.is_file() && check(&python) {
        return Ok(python);
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("run python3 -m venv")?;
    ensure!(
        status.success(),
        "python3 -m venv {} failed",
        venv.display()
    );
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", CONFLUENT_KAFKA])
        .status()
        .context("run pip")?;
    ensure!(status.success(), "pip install {CONFLUENT_KAFKA} failed");
    ensure!(check(&python), "{CONFLUENT_KAFKA} does not import");
    Ok(python)
}

/// The raw loop: a BaseProducer with librdkafka's defaults (plus the same
/// linger as loadgen, stated), the same messages, no metrics, no
/// histograms. Paced like the Python loop: every millisecond, send what is
/// due.
fn raw_produce(args: &[String]) -> anyhow::Result<()> {
    let [bootstrap, topic, count, rate, size] = args else {
        bail!("usage: raw BOOTSTRAP TOPIC COUNT RATE SIZE");
    };
    let (count, rate, size): (u64, f64, usize) = (count.parse()?, rate.parse()?, size.parse()?);
    let producer: BaseProducer<Counting> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create_with_context(Counting::default())?;
    let mut pool = PayloadPool::new(size);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        let due = if rate <= 0.0 {
            count
        } else {
            count.min((start.elapsed().as_secs_f64() * rate) as u64)
        };
        while sent < due {
            let ts = encode_send_time(wall_clock_ns());
            let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
                key: SEND_TIME_HEADER,
                value: Some(&ts),
            });
            let mut record = BaseRecord::<(), [u8]>::to(topic)
                .payload(pool.next_payload())
                .headers(headers);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(100));
                    }
                    Err((e, _)) => bail!("send: {e}"),
                }
            }
            sent += 1;
            if rate <= 0.0 {
                producer.poll(Duration::ZERO);
            }
        }
        producer.poll(Duration::ZERO);
        if rate > 0.0 && sent < count {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(30))?;
    let ctx = producer.context();
    println!(
        "acked={} failed={}",
        ctx.acked.load(Ordering::Relaxed),
        ctx.failed.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Counts delivery reports, as any real producer loop would check them.
#[derive(Default)]
struct Counting {
    acked: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() {
            &self.acked
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
