//! Tests through the shipped library (linked by build.rs). Each names the case
//! it covers; the training runs are one epoch on 64 samples so the file takes seconds.

use dashnas::{json, Arch, Interrupter, Labels, Model, Progress, Split, Status, Task};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;

const SPEC: &str = r#"{"kind":"classification","input_shape":[1,32],"num_classes":2}"#;
const SEARCH: &str = r#"{"epochs":1,"hpo":false,"seed":0,"threads":1,"batch_size":16}"#;
const RETRAIN: &str = r#"{"epochs":1,"threads":1}"#;
const LEN: usize = 32;

/// n sine waves of one cycle (class 0) or four cycles (class 1) over 32 steps,
/// with a random phase and amplitude from a fixed LCG.
fn waves(n: usize, seed: u64) -> (Vec<f32>, Vec<i64>) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64) / ((1u64 << 53) as f64)
    };
    let mut x = Vec::with_capacity(n * LEN);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 2) as i64;
        let cycles = if class == 0 { 1.0 } else { 4.0 };
        let phase = uniform() * std::f64::consts::TAU;
        let amp = 0.5 + uniform();
        for t in 0..LEN {
            let v = amp * (cycles * std::f64::consts::TAU * t as f64 / LEN as f64 + phase).sin();
            x.push(v as f32);
        }
        y.push(class);
    }
    (x, y)
}

fn task_with_data() -> Task {
    let mut task = Task::new(SPEC).expect("valid spec");
    let (x, y) = waves(64, 1);
    task.set_data(Split::Train, &x, Labels::Classes(&y))
        .expect("train data");
    let (x, y) = waves(32, 2);
    task.set_data(Split::Test, &x, Labels::Classes(&y))
        .expect("test data");
    task
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dashnas-rust-{}-{}", std::process::id(), name))
}

fn argmax_accuracy(logits: &[f32], labels: &[i64], classes: usize) -> f64 {
    let correct = logits
        .chunks(classes)
        .zip(labels)
        .filter(|(row, &label)| {
            let best = (0..classes).fold(0, |b, c| if row[c] > row[b] { c } else { b });
            best as i64 == label
        })
        .count();
    correct as f64 / labels.len() as f64
}

#[test]
fn version_is_major_minor_patch_and_abi_matches() {
    let v = dashnas::version();
    let parts: Vec<&str> = v.split('.').collect();
    assert_eq!(parts.len(), 3, "version {:?}", v);
    assert!(
        parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "{:?}",
        v
    );
    assert_eq!(dashnas::abi_version(), dashnas::ABI_VERSION);
}

#[test]
fn progress_struct_layout_matches_c_compiler() {
    let include = std::env::var("DASHNAS_INCLUDE_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../include").to_string());
    if !PathBuf::from(&include).join("dash/dash.h").exists() {
        eprintln!(
            "skipped: no dash/dash.h under {} (set DASHNAS_INCLUDE_DIR)",
            include
        );
        return;
    }
    let dir = temp_path("layout");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(
        &src,
        "#include <stddef.h>\n#include <stdio.h>\n#include <dash/dash.h>\n\
         #define O(f) (unsigned long)offsetof(dash_progress, f)\n\
         int main(void) { printf(\"%lu %lu %lu %lu %lu %lu %lu %lu %lu %lu %lu %lu %lu\", \
         (unsigned long)sizeof(dash_progress), O(size), O(stage), O(epoch), O(epochs), O(step), \
         O(steps), O(loss), O(metric), O(elapsed_s), O(eta_s), O(warning), \
         (unsigned long)sizeof(dash_status)); \
         return 0; }\n",
    )
    .unwrap();
    let cc = std::process::Command::new("cc")
        .arg("-I")
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status();
    match cc {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("skipped: cc failed: {:?}", other);
            return;
        }
    }
    let out = std::process::Command::new(&exe).output().unwrap();
    let c: Vec<usize> = String::from_utf8(out.stdout)
        .unwrap()
        .split(' ')
        .map(|s| s.parse().unwrap())
        .collect();
    let p = std::mem::MaybeUninit::<dashnas::ffi::dash_progress>::uninit();
    let base = p.as_ptr() as usize;
    let o = |f: usize| f - base;
    let rust = unsafe {
        let q = p.as_ptr();
        vec![
            std::mem::size_of::<dashnas::ffi::dash_progress>(),
            o(std::ptr::addr_of!((*q).size) as usize),
            o(std::ptr::addr_of!((*q).stage) as usize),
            o(std::ptr::addr_of!((*q).epoch) as usize),
            o(std::ptr::addr_of!((*q).epochs) as usize),
            o(std::ptr::addr_of!((*q).step) as usize),
            o(std::ptr::addr_of!((*q).steps) as usize),
            o(std::ptr::addr_of!((*q).loss) as usize),
            o(std::ptr::addr_of!((*q).metric) as usize),
            o(std::ptr::addr_of!((*q).elapsed_s) as usize),
            o(std::ptr::addr_of!((*q).eta_s) as usize),
            o(std::ptr::addr_of!((*q).warning) as usize),
            std::mem::size_of::<dashnas::ffi::dash_status>(),
        ]
    };
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(
        rust, c,
        "Rust vs C: sizeof, offsets of each field, sizeof(dash_status)"
    );
}

#[test]
fn invalid_spec_is_invalid_argument_naming_the_field() {
    let cases = [
        (
            r#"{"kind":"classifcation","input_shape":[1,32],"num_classes":2}"#,
            "kind",
        ),
        (
            r#"{"kind":"classification","input_shape":[1,32],"num_classes":1}"#,
            "num_classes",
        ),
        (
            r#"{"kind":"classification","input_shape":[1,32],"num_classes":2,"colour":3}"#,
            "colour",
        ),
        (
            r#"{"kind":"classification","input_shape":"wide","num_classes":2}"#,
            "input_shape",
        ),
    ];
    for (spec, field) in cases {
        let err = Task::new(spec).err().expect(spec);
        assert_eq!(err.status(), Status::InvalidArgument, "{}: {}", spec, err);
        assert!(
            err.message().contains(field),
            "{}: message {:?} does not name {}",
            spec,
            err.message(),
            field
        );
    }
    let err = Task::new("{not json").err().unwrap();
    assert_eq!(err.status(), Status::InvalidArgument, "{}", err);
    assert!(!err.message().is_empty());
    let err = Task::new("a\0b").err().unwrap();
    assert_eq!(err.status(), Status::InvalidArgument);
}

#[test]
fn task_spec_is_filled_with_defaults() {
    let task = Task::new(SPEC).unwrap();
    let spec = json::parse(&task.to_json().unwrap()).unwrap();
    assert_eq!(
        spec.get("kind").and_then(|v| v.as_str()),
        Some("classification")
    );
    assert_eq!(spec.get("num_classes").and_then(|v| v.as_i64()), Some(2));
    assert_eq!(
        spec.get("loss").and_then(|v| v.as_str()),
        Some("cross_entropy")
    );
    assert_eq!(
        spec.get("metric").and_then(|v| v.as_str()),
        Some("accuracy")
    );
    assert_eq!(task.sample_size(), 32);
    assert_eq!(task.split_size(Split::Train).unwrap(), 0);
}

#[test]
fn set_data_rejects_wrong_lengths_labels_and_values() {
    let mut task = Task::new(SPEC).unwrap();
    let (x, y) = waves(8, 3);

    // Checked by the binding before any pointer reaches C.
    let err = task
        .set_data(Split::Train, &x[..x.len() - 1], Labels::Classes(&y))
        .unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument, "{}", err);
    let err = task
        .set_data(Split::Train, &x, Labels::Classes(&y[..7]))
        .unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument, "{}", err);
    assert!(err.message().contains("y has 7"), "{}", err);
    let floats = vec![0.0f32; 8];
    let err = task
        .set_data(Split::Train, &x, Labels::Values(&floats))
        .unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument, "{}", err);

    // Checked by the library.
    let mut bad = y.clone();
    bad[5] = 2;
    let err = task
        .set_data(Split::Train, &x, Labels::Classes(&bad))
        .unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument, "{}", err);
    assert!(!err.message().is_empty());
    let mut nan = x.clone();
    nan[40] = f32::NAN;
    let err = task
        .set_data(Split::Train, &nan, Labels::Classes(&y))
        .unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument, "{}", err);
    let err = task
        .set_data(Split::Train, &[], Labels::Classes(&[]))
        .unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument, "{}", err);
    assert_eq!(
        task.split_size(Split::Train).unwrap(),
        0,
        "a failed set_data left data behind"
    );

    task.set_data(Split::Train, &x, Labels::Classes(&y))
        .unwrap();
    assert_eq!(task.split_size(Split::Train).unwrap(), 8);
    assert_eq!(task.split_size(Split::Test).unwrap(), 0);
}

#[test]
fn missing_files_are_io_errors() {
    let mut task = Task::new(SPEC).unwrap();
    let missing = temp_path("missing-x.npy");
    let err = task
        .load_files(Split::Train, &missing, temp_path("missing-y.npy"))
        .unwrap_err();
    assert_eq!(err.status(), Status::IoError, "{}", err);
    assert!(err.message().contains("missing-x.npy"), "{}", err);
    let err = Model::load(temp_path("missing.dash")).err().unwrap();
    assert_eq!(err.status(), Status::IoError, "{}", err);

    let junk = temp_path("junk.dash");
    std::fs::write(&junk, b"this is not a dashnas model file, only some bytes").unwrap();
    let err = Model::load(&junk).err().unwrap();
    std::fs::remove_file(&junk).ok();
    assert_eq!(err.status(), Status::BadFile, "{}", err);
}

#[test]
fn options_are_described_and_unknown_keys_named() {
    let described = json::parse(&dashnas::options_describe().unwrap()).unwrap();
    for key in [
        "seed",
        "threads",
        "device",
        "time_budget_s",
        "epochs",
        "batch_size",
        "max_train",
        "hpo",
        "lr",
        "momentum",
    ] {
        let opt = described
            .get(key)
            .unwrap_or_else(|| panic!("option {} not described", key));
        assert!(
            opt.get("help").is_some() && opt.get("used_by").is_some(),
            "{}",
            key
        );
    }
    let task = task_with_data();
    let err = task
        .search(r#"{"epochz":1,"threads":1}"#, None)
        .err()
        .unwrap();
    assert_eq!(err.status(), Status::InvalidArgument, "{}", err);
    assert!(err.message().contains("epochz"), "{}", err);
    let arch = Arch::plain(&task).unwrap();
    let err = task
        .retrain(&arch, r#"{"epochs":"one"}"#, None)
        .err()
        .unwrap();
    assert_eq!(err.status(), Status::InvalidArgument, "{}", err);
    assert!(err.message().contains("epochs"), "{}", err);
}

#[test]
fn arch_json_round_trips_and_plain_is_k3_d1() {
    let task = Task::new(SPEC).unwrap();
    let plain = Arch::plain(&task).unwrap().to_json().unwrap();
    let v = json::parse(&plain).unwrap();
    let layers = v.get("layers").and_then(|l| l.as_array()).expect("layers");
    assert!(!layers.is_empty());
    for l in layers {
        assert_eq!(
            l.get("kernel_size").and_then(|k| k.as_i64()),
            Some(3),
            "{}",
            plain
        );
        assert_eq!(
            l.get("dilation").and_then(|d| d.as_i64()),
            Some(1),
            "{}",
            plain
        );
    }
    let again = Arch::from_json(&plain).unwrap().to_json().unwrap();
    assert_eq!(json::parse(&again).unwrap(), v);
    let err = Arch::from_json(r#"{"layers": 5}"#).err().unwrap();
    assert_eq!(err.status(), Status::InvalidArgument, "{}", err);
}

#[test]
fn search_retrain_infer_save_load_and_threads() {
    let task = task_with_data();
    let mut events: Vec<Progress> = Vec::new();
    let arch = task
        .search(
            SEARCH,
            Some(&mut |p: &Progress| {
                events.push(p.clone());
                true
            }),
        )
        .expect("search");
    assert!(!events.is_empty(), "search reported no progress");
    for p in &events {
        assert!(p.stage == "search" || p.stage == "hpo", "{:?}", p);
        assert!(
            p.epoch >= 1
                && p.epoch <= p.epochs
                && (p.step >= 1 || !p.warning.is_empty())
                && p.step <= p.steps,
            "{:?}",
            p
        );
        assert!(p.loss.is_finite() && p.elapsed_s >= 0.0, "{:?}", p);
    }
    assert!(events.iter().any(|p| p.stage == "search" && p.epochs == 1));
    // The search's record, and its report page, before any retrain.
    let info = arch.info().expect("info");
    assert!(info.contains(r#""search""#), "{}", info);
    let page = dashnas::report_html(&info).expect("report");
    assert!(page.contains(r#"<section id="probabilities">"#));
    let arch_json = json::parse(&arch.to_json().unwrap()).unwrap();
    assert!(arch_json
        .get("layers")
        .and_then(|l| l.as_array())
        .map_or(false, |l| !l.is_empty()));

    let mut stages = Vec::new();
    let model = task
        .retrain(
            &arch,
            RETRAIN,
            Some(&mut |p: &Progress| {
                stages.push(p.stage.clone());
                true
            }),
        )
        .expect("retrain");
    assert!(
        !stages.is_empty() && stages.iter().all(|s| s == "retrain"),
        "{:?}",
        stages
    );
    assert_eq!(model.output_size(), 2);
    assert_eq!(model.input_size(), 32);
    assert!(json::parse(&model.info().unwrap()).is_ok());

    let (x, y) = waves(32, 2); // the test split
    let out = model.infer(&x, 32).expect("infer");
    assert_eq!(out.len(), 64);
    assert!(out.iter().all(|v| v.is_finite()), "{:?}", out);

    // evaluate's accuracy equals the one computed from infer's logits.
    let report = json::parse(&model.evaluate(&task, Split::Test).unwrap()).unwrap();
    assert_eq!(report.get("samples").and_then(|v| v.as_i64()), Some(32));
    assert_eq!(
        report.get("metric_name").and_then(|v| v.as_str()),
        Some("accuracy")
    );
    let metric = report.get("metric").and_then(|v| v.as_f64()).unwrap();
    assert!(
        (metric - argmax_accuracy(&out, &y, 2)).abs() < 1e-9,
        "report {:?}",
        report
    );

    // evaluate_with without options is evaluate; a search option is refused by name.
    let plain = model.evaluate(&task, Split::Test).unwrap();
    for options in ["", "{}"] {
        let with = model.evaluate_with(&task, Split::Test, options).unwrap();
        assert_eq!(with, plain, "options {:?}", options);
    }
    let err = model
        .evaluate_with(&task, Split::Test, r#"{"hpo_share":0.3}"#)
        .unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.message().contains("hpo_share"), "{}", err);

    let err = model.infer(&x[..40], 1).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);

    let path = temp_path("model.dash");
    model.save(&path).expect("save");
    // A path under a regular file cannot be written.
    let err = model.save(path.join("m.dash")).unwrap_err();
    assert_eq!(err.status(), Status::IoError, "{}", err);
    // ONNX export: the file, and a refused option (tests/capi/test_onnx.cpp
    // checks what the file computes against ONNX Runtime).
    let onnx = temp_path("model.onnx");
    model.export_onnx(&onnx, "").expect("export_onnx");
    let bytes = std::fs::read(&onnx).expect("read the ONNX file");
    assert!(
        bytes.windows(15).any(|w| w == b"dashnas_version"),
        "no metadata in the ONNX file"
    );
    std::fs::remove_file(&onnx).ok();
    let err = model.export_onnx(&onnx, r#"{"opset": 3}"#).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument, "{}", err);
    assert!(err.to_string().contains("opset"), "{}", err);
    assert!(!onnx.exists(), "a refused export left a file");
    let loaded = Model::load(&path).expect("load");
    let err = loaded.set_device("gpu").unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument, "{}", err);
    loaded.set_device("cpu").expect("set_device cpu");
    std::fs::remove_file(&path).ok();
    assert_eq!(
        loaded.infer(&x, 32).unwrap(),
        out,
        "loaded model infers differently"
    );
    assert_eq!(
        json::parse(&loaded.evaluate(&task, Split::Test).unwrap()).unwrap(),
        report
    );

    // One model, four threads at once, each its own slice of rows.
    let single: Vec<Vec<f32>> = (0..4)
        .map(|i| model.infer(&x[i * 8 * LEN..(i + 1) * 8 * LEN], 8).unwrap())
        .collect();
    let parallel: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let model = &model;
                let x = &x;
                s.spawn(move || {
                    let mut last = Vec::new();
                    for _ in 0..5 {
                        last = model.infer(&x[i * 8 * LEN..(i + 1) * 8 * LEN], 8).unwrap();
                    }
                    last
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(parallel, single);
    // Batches of 8 and of 32 may round differently (blocked kernels), not more.
    for (a, b) in single.concat().iter().zip(&out) {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "batch of 8 {} vs batch of 32 {}",
            a,
            b
        );
    }

    // A model moves to another thread and is dropped there.
    std::thread::spawn(move || drop(loaded)).join().unwrap();
}

#[test]
fn progress_returning_false_cancels() {
    let task = task_with_data();
    let mut calls = 0;
    let err = task
        .search(
            SEARCH,
            Some(&mut |_: &Progress| {
                calls += 1;
                false
            }),
        )
        .err()
        .expect("cancelled search returned an architecture");
    assert_eq!(err.status(), Status::Cancelled, "{}", err);
    assert_eq!(calls, 1, "the callback ran again after asking to stop");

    let arch = Arch::plain(&task).unwrap();
    let err = task
        .retrain(&arch, RETRAIN, Some(&mut |_: &Progress| false))
        .err()
        .unwrap();
    assert_eq!(err.status(), Status::Cancelled, "{}", err);
}

#[test]
fn panic_in_progress_is_resumed_after_the_call_returns() {
    let task = task_with_data();
    let mut calls = 0;
    let caught = panic::catch_unwind(AssertUnwindSafe(|| {
        task.search(
            SEARCH,
            Some(&mut |_: &Progress| {
                calls += 1;
                panic!("boom from progress")
            }),
        )
    }));
    let payload = caught.err().expect("the panic was swallowed");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom from progress"));
    assert_eq!(calls, 1);

    // The task is intact and the library still works on this thread.
    assert_eq!(task.split_size(Split::Train).unwrap(), 64);
    let arch = Arch::plain(&task).unwrap();
    let caught = panic::catch_unwind(AssertUnwindSafe(|| {
        task.retrain(&arch, RETRAIN, Some(&mut |_: &Progress| panic!("{}", 42)))
    }));
    assert_eq!(
        caught
            .err()
            .unwrap()
            .downcast_ref::<String>()
            .map(|s| s.as_str()),
        Some("42")
    );
    let err = task
        .search(SEARCH, Some(&mut |_: &Progress| false))
        .err()
        .unwrap();
    assert_eq!(err.status(), Status::Cancelled);
}

#[test]
fn handles_move_between_threads() {
    let task = task_with_data();
    let arch = Arch::plain(&task).unwrap();
    let (task, arch) = std::thread::spawn(move || {
        assert_eq!(task.split_size(Split::Train).unwrap(), 64);
        (task, arch)
    })
    .join()
    .unwrap();
    assert!(arch.to_json().is_ok());
    drop(task);
}

#[test]
fn sizes_of_every_kind_come_from_the_library() {
    // (spec, floats per input sample, values per target), worked out by hand.
    let cases = [
        (
            r#"{"kind":"classification","input_shape":[3,4,5],"num_classes":7}"#,
            60,
            1,
        ),
        (
            r#"{"kind":"multilabel","input_shape":[2,8],"num_classes":5}"#,
            16,
            5,
        ),
        (
            r#"{"kind":"regression","input_shape":[1,8],"num_outputs":3}"#,
            8,
            3,
        ),
        (
            r#"{"kind":"dense","input_shape":[2,4,6],"num_outputs":3}"#,
            48,
            72,
        ),
    ];
    for (spec, input, target) in cases {
        let mut task = Task::new(spec).unwrap();
        assert_eq!(
            (task.sample_size(), task.target_size()),
            (input, target),
            "{}",
            spec
        );
        let n = 8;
        let x: Vec<f32> = (0..n * input).map(|i| (0.37 * i as f32).sin()).collect();
        if target == 1 {
            let y: Vec<i64> = (0..n as i64).map(|i| i % 7).collect();
            task.set_data(Split::Train, &x, Labels::Classes(&y))
                .unwrap();
        } else {
            let y: Vec<f32> = (0..n * target).map(|i| (i % 2) as f32).collect();
            task.set_data(Split::Train, &x, Labels::Values(&y)).unwrap();
        }
        let arch = Arch::plain(&task).unwrap();
        let model = task
            .retrain(&arch, r#"{"epochs":1,"threads":1,"batch_size":4}"#, None)
            .expect(spec);
        assert_eq!(model.input_size(), input, "{}", spec);
        assert_eq!(
            model.output_size(),
            if target == 1 { 7 } else { target },
            "{}",
            spec
        );
        assert_eq!(
            model.infer(&x[..input], 1).unwrap().len(),
            model.output_size()
        );
    }
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn handles_are_send_and_sync() {
    assert_send_sync::<Task>();
    assert_send_sync::<Arch>();
    assert_send_sync::<Model>();
    assert_send_sync::<Interrupter>();
}

#[test]
fn interrupt_from_another_thread_cancels_a_retrain_and_later_calls_run() {
    let task = task_with_data();
    let arch = Arch::plain(&task).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (task_ref, arch_ref) = (&task, &arch);
    let result = std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let mut first = Some(tx);
            // Thousands of epochs: only the interrupt ends it early.
            task_ref.retrain(
                arch_ref,
                r#"{"epochs":5000,"threads":1,"batch_size":16}"#,
                Some(&mut |_: &Progress| {
                    if let Some(tx) = first.take() {
                        tx.send(()).unwrap();
                    }
                    true
                }),
            )
        });
        rx.recv().unwrap(); // the first training step is done
        task.interrupt();
        worker.join().unwrap()
    });
    let err = result
        .err()
        .expect("an interrupted retrain returned a model");
    assert_eq!(err.status(), Status::Cancelled, "{}", err);
    assert!(
        err.message().contains("interrupted by dash_task_interrupt"),
        "{}",
        err
    );
    // Calls that start afterwards are not affected.
    task.retrain(&arch, RETRAIN, None)
        .expect("retrain after the interrupt");
}

#[test]
fn interrupter_stops_a_search_from_a_thread_that_does_not_borrow_the_task() {
    let task = task_with_data();
    let interrupter = task.interrupter();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = {
        let (interrupter, done) = (interrupter.clone(), done.clone());
        // 'static: it owns its clone of the interrupter, not a borrow.
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                assert!(interrupter.interrupt(), "the task is still alive");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let err = task
        .search(
            r#"{"epochs":5000,"hpo":false,"threads":1,"batch_size":16}"#,
            None,
        )
        .err()
        .expect("an interrupted search returned an architecture");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    stopper.join().unwrap();
    assert_eq!(err.status(), Status::Cancelled, "{}", err);
    assert!(err.message().contains("dash_task_interrupt"), "{}", err);
    drop(task);
    assert!(
        !interrupter.interrupt(),
        "an interrupter outlived its task and still reached it"
    );
}

/// Data-parallel through the binding: two ranks as two threads of this
/// process, meeting on a loopback port, each with its own task handle holding
/// the same data; both return the same architecture and a model whose outputs
/// are identical. (A library built without Gloo says so: Unsupported.)
#[test]
fn two_ranks_search_and_retrain_to_the_same_model() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let options = |rank: usize, extra: &str| {
        format!(
            r#"{{"world_size":2,"rank":{},"init":"tcp://127.0.0.1:{}","dist_timeout_s":60,"threads":1,"seed":0,"batch_size":16,{}}}"#,
            rank, port, extra
        )
    };
    let tasks = [task_with_data(), task_with_data()];
    let (x, _) = waves(32, 2);
    let results: Vec<dashnas::Result<(String, Vec<f32>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                let task = &tasks[rank];
                let x = &x;
                let search = options(rank, r#""epochs":1,"hpo":false"#);
                let retrain = options(rank, r#""epochs":2"#);
                s.spawn(move || {
                    let arch = task.search(&search, None)?;
                    let model = task.retrain(&arch, &retrain, None)?;
                    Ok((arch.to_json()?, model.infer(x, 32)?))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rank thread"))
            .collect()
    });
    if let Err(e) = &results[0] {
        if e.status() == Status::Unsupported {
            eprintln!("skipped: {}", e);
            return;
        }
    }
    let ranks: Vec<(String, Vec<f32>)> = results
        .into_iter()
        .map(|r| r.expect("both ranks succeed"))
        .collect();
    assert_eq!(ranks[0].0, ranks[1].0, "architectures differ between ranks");
    assert_eq!(ranks[0].1.len(), 64);
    assert_eq!(ranks[0].1, ranks[1].1, "outputs differ between ranks");
    assert!(ranks[0].1.iter().all(|v| v.is_finite()));
}
