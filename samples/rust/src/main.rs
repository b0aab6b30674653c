//! dashnas sample: DASH on Fashion-MNIST through the Rust binding.
//! search -> retrain -> evaluate -> save -> load -> infer, in a time budget.

use dashnas::{json, Model, Progress, Split, Task};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const SPEC: &str = r#"{"kind":"classification","input_shape":[1,28,28],"num_classes":10}"#;
const CHECK_IMAGES: usize = 100;

const USAGE: &str = "usage: dashnas-sample [--budget SECONDS] [--max-train N] [--threads N]
                      [--data DIR] [--model PATH]
  --budget     wall-clock seconds for search + retrain, 40% / 60% (env DASHNAS_BUDGET; 60)
  --max-train  training images used (env DASHNAS_MAX_TRAIN; 2000)
  --threads    compute threads (env DASHNAS_THREADS; all cores)
  --data       folder with Fashion-MNIST's four .gz files
               (env DASHNAS_DATA; /usr/share/datasets/fashion-mnist)
  --model      where to save the model (default: a file in the temp folder)";

struct Args {
    budget_s: f64,
    max_train: u64,
    threads: usize,
    data: PathBuf,
    model: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
        match std::env::var(name) {
            Ok(v) => v
                .parse()
                .map_err(|_| format!("{}={:?} is not a valid value", name, v)),
            Err(_) => Ok(default),
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = Args {
        budget_s: env_or("DASHNAS_BUDGET", 60.0)?,
        max_train: env_or("DASHNAS_MAX_TRAIN", 2000)?,
        threads: env_or("DASHNAS_THREADS", cores)?,
        data: env_or(
            "DASHNAS_DATA",
            PathBuf::from("/usr/share/datasets/fashion-mnist"),
        )?,
        model: std::env::temp_dir().join("dashnas-sample-fashion-mnist.dash"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = it.next().ok_or_else(|| format!("{} needs a value", flag))?;
        let bad = || format!("{} {:?} is not a valid value", flag, value);
        match flag.as_str() {
            "--budget" => args.budget_s = value.parse().map_err(|_| bad())?,
            "--max-train" => args.max_train = value.parse().map_err(|_| bad())?,
            "--threads" => args.threads = value.parse().map_err(|_| bad())?,
            "--data" => args.data = PathBuf::from(&value),
            "--model" => args.model = PathBuf::from(&value),
            _ => return Err(format!("unknown argument {}", flag)),
        }
    }
    if !args.budget_s.is_finite()
        || args.budget_s <= 0.0
        || args.max_train == 0
        || args.threads == 0
    {
        return Err("--budget, --max-train and --threads must be positive".to_string());
    }
    Ok(args)
}

/// An idx file's payload after its header, decompressed by `gzip -dc` (the
/// crate has no dependencies, and gzip is on every Debian system).
fn read_idx_gz(
    path: &Path,
    magic: u32,
    dims: usize,
) -> Result<(Vec<usize>, Vec<u8>), Box<dyn Error>> {
    let out = Command::new("gzip").arg("-dc").arg(path).output()?;
    if !out.status.success() {
        return Err(format!(
            "gzip -dc {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let bytes = out.stdout;
    let word = |i: usize| -> Option<u32> {
        let b = bytes.get(4 * i..4 * i + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    if word(0) != Some(magic) {
        return Err(format!(
            "{}: not an idx file with magic {:#010x}",
            path.display(),
            magic
        )
        .into());
    }
    let shape: Vec<usize> = (1..=dims)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("{}: truncated header", path.display()))?;
    let body = 4 * (dims + 1);
    let want = shape.iter().product::<usize>();
    if bytes.len() != body + want {
        return Err(format!(
            "{}: {} bytes of data, the header says {}",
            path.display(),
            bytes.len() - body,
            want
        )
        .into());
    }
    Ok((shape, bytes[body..].to_vec()))
}

/// Prints one line per epoch of each stage: the epoch's last event, which
/// carries its validation metric (the library reports every step and epoch).
#[derive(Default)]
struct EpochPrinter {
    pending: Option<Progress>,
}

impl EpochPrinter {
    fn on(&mut self, p: &Progress) -> bool {
        if !p.warning.is_empty() {
            println!("  warning: {}", p.warning);
        }
        if p.step == 0 {
            return true;
        }
        let same_epoch = |q: &Progress| q.stage == p.stage && q.epoch == p.epoch;
        if !self.pending.as_ref().map_or(true, same_epoch) {
            self.flush();
        }
        self.pending = Some(p.clone());
        true
    }

    fn flush(&mut self) {
        if let Some(p) = self.pending.take() {
            let metric = if p.metric.is_nan() {
                "-".to_string()
            } else {
                format!("{:.4}", p.metric)
            };
            println!(
                "  [{}] epoch {}/{}  loss {:.4}  valid {}  {:.1}s elapsed, eta {:.1}s",
                p.stage, p.epoch, p.epochs, p.loss, metric, p.elapsed_s, p.eta_s
            );
        }
    }
}

fn accuracy(logits: &[f32], labels: &[u8], classes: usize) -> f64 {
    let correct = logits
        .chunks(classes)
        .zip(labels)
        .filter(|(row, &label)| {
            let best = (0..classes).fold(0, |b, c| if row[c] > row[b] { c } else { b });
            best == label as usize
        })
        .count();
    correct as f64 / labels.len() as f64
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    println!(
        "dashnas {} (Rust binding, ABI {})",
        dashnas::version(),
        dashnas::abi_version()
    );
    let file = |name: &str| args.data.join(name);

    let mut task = Task::new(SPEC)?;
    task.load_files(
        Split::Train,
        file("train-images-idx3-ubyte.gz"),
        file("train-labels-idx1-ubyte.gz"),
    )?;
    task.load_files(
        Split::Test,
        file("t10k-images-idx3-ubyte.gz"),
        file("t10k-labels-idx1-ubyte.gz"),
    )?;
    println!(
        "Fashion-MNIST: {} train, {} test images; budget {:.0}s, max_train {}, threads {}",
        task.split_size(Split::Train)?,
        task.split_size(Split::Test)?,
        args.budget_s,
        args.max_train,
        args.threads
    );

    let options = |share: f64| {
        format!(
            r#"{{"seed":0,"threads":{},"time_budget_s":{:.3},"max_train":{}}}"#,
            args.threads,
            args.budget_s * share,
            args.max_train
        )
    };

    println!("search ({:.0}s):", args.budget_s * 0.4);
    let mut printer = EpochPrinter::default();
    let arch = task.search(&options(0.4), Some(&mut |p: &Progress| printer.on(p)))?;
    printer.flush();
    println!("architecture: {}", arch.to_json()?);

    println!("retrain ({:.0}s):", args.budget_s * 0.6);
    let model = task.retrain(
        &arch,
        &options(0.6),
        Some(&mut |p: &Progress| printer.on(p)),
    )?;
    printer.flush();

    let report_text = model.evaluate(&task, Split::Test)?;
    let report = json::parse(&report_text)?;
    let metric = report
        .get("metric")
        .and_then(|m| m.as_f64())
        .ok_or("no metric in the report")?;
    println!("evaluate: {}", report_text);
    println!("test accuracy (dash_evaluate): {:.4}", metric);

    model.save(&args.model)?;
    let loaded = Model::load(&args.model)?;
    println!("saved and loaded {}", args.model.display());
    let report_path = args.model.with_extension("html");
    std::fs::write(&report_path, dashnas::report_html(&model.info()?)?)
        .map_err(|e| format!("cannot write {}: {}", report_path.display(), e))?;
    println!("report: {}", report_path.display());

    let (shape, pixels) = read_idx_gz(&file("t10k-images-idx3-ubyte.gz"), 0x0000_0803, 3)?;
    let (_, labels) = read_idx_gz(&file("t10k-labels-idx1-ubyte.gz"), 0x0000_0801, 1)?;
    let n = CHECK_IMAGES.min(shape[0]).min(labels.len());
    let per = shape[1] * shape[2];
    // Raw 0..255 values: the model normalises its inputs itself.
    let x: Vec<f32> = pixels[..n * per].iter().map(|&p| p as f32).collect();
    let in_memory = model.infer(&x, n)?;
    let reloaded = loaded.infer(&x, n)?;
    if in_memory != reloaded {
        let worst = in_memory
            .iter()
            .zip(&reloaded)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        return Err(format!("the loaded model's outputs differ (max |diff| {})", worst).into());
    }
    println!(
        "infer on the first {} test images: loaded == in-memory, accuracy {:.4}",
        n,
        accuracy(&reloaded, &labels[..n], model.output_size())
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if msg.is_empty() {
                println!("{}", USAGE);
                return ExitCode::SUCCESS;
            }
            eprintln!("dashnas-sample: {}\n{}", msg, USAGE);
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dashnas-sample: {}", e);
            ExitCode::FAILURE
        }
    }
}
