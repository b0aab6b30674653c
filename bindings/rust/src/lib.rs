//! Safe Rust binding of dashnas, over the C ABI in `include/dash/dash.h`.
//!
//! ```no_run
//! use dashnas::{Labels, Split, Task};
//! # fn main() -> Result<(), dashnas::Error> {
//! let mut task = Task::new(r#"{"kind":"classification","input_shape":[1,32],"num_classes":2}"#)?;
//! # let (x, y) = (vec![0.0f32; 64 * 32], vec![0i64; 64]);
//! task.set_data(Split::Train, &x, Labels::Classes(&y))?;
//! let arch = task.search(r#"{"epochs":1}"#, None)?;
//! let model = task.retrain(&arch, r#"{"epochs":1}"#, None)?;
//! let logits = model.infer(&x[..32], 1)?; // 2 values: one sample, two classes
//! # Ok(()) }
//! ```
//!
//! Ownership: [`Task`], [`Arch`] and [`Model`] each own one library handle and
//! free it on drop. Strings the library returns are copied into `String`s and
//! freed at once with `dash_string_free`.
//!
//! Errors: every fallible call returns [`Result`]; an [`Error`] holds the
//! [`Status`] and the message of `dash_last_error()`, copied on the calling
//! thread right after the failing call, before anything else runs.
//!
//! Threads: the borrow rules carry the header's per-handle rules. [`Arch`] and
//! [`Model`] are `Send + Sync` with `&self` methods only (an arch is immutable;
//! a model locks itself in the library). [`Task`] is `Send + Sync` too: its
//! `&self` methods ([`Task::search`], [`Task::retrain`], [`Model::evaluate`],
//! ...) are the calls that only read the task, which the library lets run at
//! once, and the ones that change it ([`Task::set_data`], [`Task::load_files`])
//! take `&mut self`. So several threads may search and retrain on one shared
//! `&Task` (e.g. `std::thread::scope` or an `Arc<Task>`).
//!
//! Interrupting: [`Task::interrupt`] makes every search, retrain and evaluate
//! running on the task return [`Status::Cancelled`] at its next training step.
//! Call it through a shared `&Task` from another thread, or from the progress
//! closure; or take a [`Interrupter`] with [`Task::interrupter`], a `'static`,
//! `Send + Sync + Clone` handle for a thread that does not borrow the task.
//!
//! Progress and panics: `search` and `retrain` take an optional closure that
//! sees each [`Progress`] event and returns `true` to go on or `false` to cancel
//! (the call then fails with [`Status::Cancelled`]). The closure runs behind an
//! `extern "C"` trampoline under `catch_unwind`: a panic never unwinds into the
//! library. It cancels the run instead, and once the C call has returned (and
//! anything it made has been freed) the panic is resumed with
//! `std::panic::resume_unwind`, so the caller sees the original panic, payload
//! intact. The closure is not called again after it panicked.

pub mod ffi;
pub mod json;

use std::any::Any;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::ptr;
use std::sync::{Arc, Weak};

/// The ABI version this crate was written for (`DASH_ABI_VERSION`). Creating a
/// task, loading a model or reading an architecture fails with
/// [`Status::Unsupported`] if the loaded library reports another one.
pub const ABI_VERSION: i32 = ffi::DASH_ABI_VERSION;

/// `DASH_VERSION_STRING` of the header this crate was written from.
pub const HEADER_VERSION: &str = ffi::DASH_VERSION_STRING;

/// The loaded library's version, "MAJOR.MINOR.PATCH".
pub fn version() -> &'static str {
    // Static storage in the library, never freed.
    let s = unsafe { CStr::from_ptr(ffi::dash_version()) };
    s.to_str().unwrap_or("")
}

/// The loaded library's `DASH_ABI_VERSION`.
pub fn abi_version() -> i32 {
    unsafe { ffi::dash_abi_version() }
}

fn check_abi() -> Result<()> {
    let lib = abi_version();
    if lib == ABI_VERSION {
        Ok(())
    } else {
        Err(Error::new(
            Status::Unsupported,
            format!(
                "libdashnas {} has ABI version {}, but this dashnas crate was written for ABI \
                 version {}; build against a matching library",
                version(),
                lib,
                ABI_VERSION
            ),
        ))
    }
}

/// Every option of `search` and `retrain` as JSON:
/// `{"name": {"type", "default", "used_by", "help"}, ...}`.
pub fn options_describe() -> Result<String> {
    check_abi()?;
    let mut out: *mut c_char = ptr::null_mut();
    check(unsafe { ffi::dash_options_describe(&mut out) })?;
    Ok(unsafe { take_string(out) })
}

/// The run report: one self-contained HTML page (inline SVG, it fetches
/// nothing) from a run's record, i.e. what [`Model::info`] returns or the
/// runner's `--out` file. Anything else is `Status::InvalidArgument`.
pub fn report_html(run_json: &str) -> Result<String> {
    check_abi()?;
    let run = c_string(run_json, "run_json")?;
    let mut out: *mut c_char = ptr::null_mut();
    check(unsafe { ffi::dash_report_html(run.as_ptr(), &mut out) })?;
    Ok(unsafe { take_string(out) })
}

// ---- Status and errors ------------------------------------------------------

/// Mirrors `dash_status`. `Unknown` holds a code a newer library may return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    /// A NULL, a wrong length or shape, a bad option.
    InvalidArgument,
    /// A file is missing, unreadable or unwritable.
    IoError,
    /// A file was read but is truncated, corrupted or not ours.
    BadFile,
    /// The progress closure asked to stop, or [`Task::interrupt`] stopped it.
    Cancelled,
    /// Valid, but not available in this build (e.g. CUDA), or an ABI mismatch.
    Unsupported,
    /// An allocation failed; the library keeps working.
    OutOfMemory,
    /// A bug in dashnas: please report the message.
    Internal,
    Unknown(i32),
}

impl Status {
    pub fn from_code(code: i32) -> Status {
        match code {
            ffi::DASH_OK => Status::Ok,
            ffi::DASH_INVALID_ARGUMENT => Status::InvalidArgument,
            ffi::DASH_IO_ERROR => Status::IoError,
            ffi::DASH_BAD_FILE => Status::BadFile,
            ffi::DASH_CANCELLED => Status::Cancelled,
            ffi::DASH_UNSUPPORTED => Status::Unsupported,
            ffi::DASH_OUT_OF_MEMORY => Status::OutOfMemory,
            ffi::DASH_INTERNAL => Status::Internal,
            other => Status::Unknown(other),
        }
    }

    pub fn code(self) -> i32 {
        match self {
            Status::Ok => ffi::DASH_OK,
            Status::InvalidArgument => ffi::DASH_INVALID_ARGUMENT,
            Status::IoError => ffi::DASH_IO_ERROR,
            Status::BadFile => ffi::DASH_BAD_FILE,
            Status::Cancelled => ffi::DASH_CANCELLED,
            Status::Unsupported => ffi::DASH_UNSUPPORTED,
            Status::OutOfMemory => ffi::DASH_OUT_OF_MEMORY,
            Status::Internal => ffi::DASH_INTERNAL,
            Status::Unknown(code) => code,
        }
    }

    /// The C constant's name, e.g. "DASH_IO_ERROR".
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "DASH_OK",
            Status::InvalidArgument => "DASH_INVALID_ARGUMENT",
            Status::IoError => "DASH_IO_ERROR",
            Status::BadFile => "DASH_BAD_FILE",
            Status::Cancelled => "DASH_CANCELLED",
            Status::Unsupported => "DASH_UNSUPPORTED",
            Status::OutOfMemory => "DASH_OUT_OF_MEMORY",
            Status::Internal => "DASH_INTERNAL",
            Status::Unknown(_) => "DASH_UNKNOWN_STATUS",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Unknown(code) => write!(f, "{} ({})", self.name(), code),
            _ => f.write_str(self.name()),
        }
    }
}

/// A failed call: its status and what the library (or this crate, for checks
/// it makes before calling) said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    status: Status,
    message: String,
}

impl Error {
    fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    /// Copies `dash_last_error()`. Call right after the failing call, on its thread.
    fn last(code: c_int) -> Error {
        let message = unsafe { CStr::from_ptr(ffi::dash_last_error()) }
            .to_string_lossy()
            .into_owned();
        Error {
            status: Status::from_code(code),
            message,
        }
    }

    fn invalid(message: impl Into<String>) -> Error {
        Error::new(Status::InvalidArgument, message)
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.status)
        } else {
            write!(f, "{}: {}", self.status, self.message)
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn check(code: c_int) -> Result<()> {
    if code == ffi::DASH_OK {
        Ok(())
    } else {
        Err(Error::last(code))
    }
}

fn c_string(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{} contains a NUL byte", what)))
}

fn c_path(p: &Path, what: &str) -> Result<CString> {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        p.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = p
        .to_str()
        .ok_or_else(|| Error::invalid(format!("{} {:?} is not valid UTF-8", what, p)))?
        .as_bytes()
        .to_vec();
    CString::new(bytes).map_err(|_| Error::invalid(format!("{} {:?} contains a NUL byte", what, p)))
}

/// Copies a string the library returned, then frees it with `dash_string_free`.
unsafe fn take_string(s: *mut c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    let copy = CStr::from_ptr(s).to_string_lossy().into_owned();
    ffi::dash_string_free(s);
    copy
}

fn to_i64(n: usize) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::invalid(format!("{} samples is too many", n)))
}

// ---- Progress -----------------------------------------------------------------

/// One progress event of `search` or `retrain`, copied out of `dash_progress`.
/// Fields the loaded library does not fill (an older `size`) read as 0, NaN or "".
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// "search", "hpo" or "retrain".
    pub stage: String,
    /// 1-based, within the stage.
    pub epoch: i64,
    /// Planned epochs of the stage.
    pub epochs: i64,
    /// 1-based, within the epoch; 0 for an event before the stage's first
    /// step, which only carries a warning.
    pub step: i64,
    /// Steps per epoch.
    pub steps: i64,
    /// Running mean training loss of the epoch.
    pub loss: f64,
    /// Latest validation metric; NaN before the first.
    pub metric: f64,
    /// Seconds since the stage started.
    pub elapsed_s: f64,
    /// Estimated seconds left in the stage.
    pub eta_s: f64,
    /// A warning about the stage (e.g. its budget affords too few steps to
    /// learn), on the first event after it arose; "" otherwise.
    pub warning: String,
}

impl Progress {
    /// Reads only the fields that lie wholly within the event's `size`.
    unsafe fn from_raw(event: *const ffi::dash_progress) -> Progress {
        let size = ptr::read_unaligned(ptr::addr_of!((*event).size));
        let mut raw = ffi::dash_progress {
            size: 0,
            stage: ptr::null(),
            epoch: 0,
            epochs: 0,
            step: 0,
            steps: 0,
            loss: f64::NAN,
            metric: f64::NAN,
            elapsed_s: f64::NAN,
            eta_s: f64::NAN,
            warning: ptr::null(),
        };
        // Offsets of each field's end, from a local value (always in bounds).
        let base = ptr::addr_of!(raw) as usize;
        let ends = [
            ptr::addr_of!(raw.size) as usize - base + std::mem::size_of::<usize>(),
            ptr::addr_of!(raw.stage) as usize - base + std::mem::size_of::<*const c_char>(),
            ptr::addr_of!(raw.epoch) as usize - base + 8,
            ptr::addr_of!(raw.epochs) as usize - base + 8,
            ptr::addr_of!(raw.step) as usize - base + 8,
            ptr::addr_of!(raw.steps) as usize - base + 8,
            ptr::addr_of!(raw.loss) as usize - base + 8,
            ptr::addr_of!(raw.metric) as usize - base + 8,
            ptr::addr_of!(raw.elapsed_s) as usize - base + 8,
            ptr::addr_of!(raw.eta_s) as usize - base + 8,
            ptr::addr_of!(raw.warning) as usize - base + std::mem::size_of::<*const c_char>(),
        ];
        let n = ends
            .iter()
            .copied()
            .filter(|&end| end <= size)
            .max()
            .unwrap_or(0);
        ptr::copy_nonoverlapping(event as *const u8, ptr::addr_of_mut!(raw) as *mut u8, n);
        let text = |s: *const c_char| {
            if s.is_null() {
                String::new()
            } else {
                CStr::from_ptr(s).to_string_lossy().into_owned()
            }
        };
        let stage = text(raw.stage);
        Progress {
            stage,
            epoch: raw.epoch,
            epochs: raw.epochs,
            step: raw.step,
            steps: raw.steps,
            loss: raw.loss,
            metric: raw.metric,
            elapsed_s: raw.elapsed_s,
            eta_s: raw.eta_s,
            warning: text(raw.warning),
        }
    }
}

/// What the trampoline reaches through `user_data`.
struct Callback<'a> {
    f: &'a mut (dyn FnMut(&Progress) -> bool + 'a),
    panic: Option<Box<dyn Any + Send + 'static>>,
}

unsafe extern "C" fn trampoline(event: *const ffi::dash_progress, user_data: *mut c_void) -> c_int {
    if user_data.is_null() {
        return 0;
    }
    let cb = &mut *(user_data as *mut Callback<'_>);
    if cb.panic.is_some() {
        return 1; // keep cancelling; the closure is not called again
    }
    if event.is_null() {
        return 0;
    }
    match panic::catch_unwind(AssertUnwindSafe(|| (cb.f)(&Progress::from_raw(event)))) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(payload) => {
            cb.panic = Some(payload);
            1
        }
    }
}

/// Runs `call` with the trampoline (or no callback), and returns its result
/// with the error already copied, plus a panic the closure raised, if any.
fn call_with_progress(
    progress: Option<&mut dyn FnMut(&Progress) -> bool>,
    call: impl FnOnce(ffi::dash_progress_fn, *mut c_void) -> c_int,
) -> (Result<()>, Option<Box<dyn Any + Send + 'static>>) {
    match progress {
        None => (check(call(None, ptr::null_mut())), None),
        Some(f) => {
            let mut cb = Callback { f, panic: None };
            let code = call(
                Some(trampoline),
                &mut cb as *mut Callback<'_> as *mut c_void,
            );
            let result = check(code);
            (result, cb.panic.take())
        }
    }
}

// ---- Tasks ----------------------------------------------------------------------

/// A data split of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    /// Optional: carved from train ("valid_fraction") if unset.
    Valid,
    Test,
}

impl Split {
    fn raw(self) -> ffi::dash_split {
        match self {
            Split::Train => ffi::DASH_SPLIT_TRAIN,
            Split::Valid => ffi::DASH_SPLIT_VALID,
            Split::Test => ffi::DASH_SPLIT_TEST,
        }
    }
}

/// Targets for [`Task::set_data`]: class indices for classification, float
/// values (multilabel 0/1, regression, dense) otherwise.
#[derive(Clone, Copy, Debug)]
pub enum Labels<'a> {
    /// `[n]` class indices in `[0, num_classes)`.
    Classes(&'a [i64]),
    /// `[n, num_classes]` (multilabel), `[n, num_outputs]` (regression) or
    /// `[n, num_outputs, spatial...]` (dense).
    Values(&'a [f32]),
}

/// Sizes per sample, from `dash_task_input_size` and `dash_task_target_size`;
/// they let the binding check slice lengths before handing raw pointers to C.
#[derive(Clone, Copy, Debug)]
struct Layout {
    x_per_sample: usize,
    y_per_sample: usize,
    classes: bool,
}

/// A size the library reported, as a positive `usize`.
fn size_from(function: &str, n: i64) -> Result<usize> {
    usize::try_from(n)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| Error::new(Status::Internal, format!("{} returned {}", function, n)))
}

/// The `dash_task` itself, freed when the last owner drops it: the [`Task`]
/// and, for as long as one of them is interrupting, an [`Interrupter`].
struct TaskHandle(*mut ffi::dash_task);

// Send + Sync: the handle has no thread affinity. Shared use goes through
// `Task`, whose `&self`/`&mut self` split is the header's read/change split,
// or through `Interrupter`, which only calls dash_task_interrupt (allowed at
// any time from any thread). dash_task_free runs in Drop, when no one else
// holds the handle.
unsafe impl Send for TaskHandle {}
unsafe impl Sync for TaskHandle {}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        unsafe { ffi::dash_task_free(self.0) } // NULL-safe
    }
}

/// A task spec and its data splits (owns a `dash_task`).
pub struct Task {
    handle: Arc<TaskHandle>,
    layout: Layout,
}

// Send + Sync come from TaskHandle (see there): `&self` methods only read the
// task, which the library allows from many threads at once; `&mut self`
// methods change it and so have it to themselves.

/// Interrupts the calls running on a task from any thread, without borrowing
/// it (from [`Task::interrupter`]). Clones interrupt the same task. It does
/// not keep the task alive: once the [`Task`] is dropped, `interrupt` does
/// nothing and returns `false`.
#[derive(Clone)]
pub struct Interrupter {
    task: Weak<TaskHandle>,
}

impl Interrupter {
    /// As [`Task::interrupt`]. Returns `false` if the task no longer exists
    /// (so nothing can be running on it).
    pub fn interrupt(&self) -> bool {
        match self.task.upgrade() {
            // The strong reference keeps the handle alive for the call; if
            // the Task was dropped meanwhile, the handle is freed here after.
            Some(handle) => {
                unsafe { ffi::dash_task_interrupt(handle.0) };
                true
            }
            None => false,
        }
    }
}

impl fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interrupter").finish_non_exhaustive()
    }
}

impl Task {
    /// Creates a task from a spec (see `dash_task_create` in dash.h), e.g.
    /// `{"kind":"classification","input_shape":[1,28,28],"num_classes":10}`.
    pub fn new(spec_json: &str) -> Result<Task> {
        check_abi()?;
        let spec = c_string(spec_json, "the task spec")?;
        let mut raw: *mut ffi::dash_task = ptr::null_mut();
        check(unsafe { ffi::dash_task_create(spec.as_ptr(), &mut raw) })?;
        // Owned from here on, so an error below still frees it.
        let mut task = Task {
            handle: Arc::new(TaskHandle(raw)),
            layout: Layout {
                x_per_sample: 1,
                y_per_sample: 1,
                classes: true,
            },
        };
        let (mut x, mut y) = (0i64, 0i64);
        check(unsafe { ffi::dash_task_input_size(raw, &mut x) })?;
        check(unsafe { ffi::dash_task_target_size(raw, &mut y) })?;
        // The kind says which Labels variant y must be; sizes come from above.
        let filled = task.to_json()?;
        let kind = json::parse(&filled)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str().map(String::from)))
            .ok_or_else(|| {
                Error::new(
                    Status::Internal,
                    format!(
                        "the dashnas crate found no \"kind\" in the task spec {}",
                        filled
                    ),
                )
            })?;
        task.layout = Layout {
            x_per_sample: size_from("dash_task_input_size", x)?,
            y_per_sample: size_from("dash_task_target_size", y)?,
            classes: kind == "classification",
        };
        Ok(task)
    }

    fn raw(&self) -> *mut ffi::dash_task {
        self.handle.0
    }

    /// Floats one sample of `input_shape` holds (`dash_task_input_size`).
    pub fn sample_size(&self) -> usize {
        self.layout.x_per_sample
    }

    /// Values one target holds (`dash_task_target_size`): 1 for
    /// classification (one class index), num_classes for multilabel,
    /// num_outputs for regression, num_outputs * prod(spatial) for dense.
    pub fn target_size(&self) -> usize {
        self.layout.y_per_sample
    }

    /// Makes every [`Task::search`], [`Task::retrain`] and [`Model::evaluate`]
    /// running on this task at this moment fail with [`Status::Cancelled`]:
    /// search and retrain at their next training step, evaluate once its pass
    /// is done. Calls that start afterwards are not affected. Safe from any
    /// thread at any time, and from a progress closure.
    pub fn interrupt(&self) {
        // Fails only for NULL, which a Task never holds.
        unsafe { ffi::dash_task_interrupt(self.raw()) };
    }

    /// A handle that interrupts this task from a thread that does not borrow
    /// it (see [`Interrupter`]).
    pub fn interrupter(&self) -> Interrupter {
        Interrupter {
            task: Arc::downgrade(&self.handle),
        }
    }

    /// Copies samples into a split, replacing what it held. `x` holds
    /// n * prod(input_shape) floats (C order); `y` holds the n targets.
    pub fn set_data(&mut self, split: Split, x: &[f32], y: Labels<'_>) -> Result<()> {
        let per = self.layout.x_per_sample;
        if x.len() % per != 0 {
            return Err(Error::invalid(format!(
                "x has {} floats, which is not a whole number of samples of {} floats each",
                x.len(),
                per
            )));
        }
        let n = x.len() / per;
        let want = n * self.layout.y_per_sample;
        let (y_ptr, y_len) =
            match (y, self.layout.classes) {
                (Labels::Classes(c), true) => (c.as_ptr() as *const c_void, c.len()),
                (Labels::Values(v), false) => (v.as_ptr() as *const c_void, v.len()),
                (Labels::Classes(_), false) => {
                    return Err(Error::invalid(
                        "y: this task's targets are float values; pass Labels::Values",
                    ))
                }
                (Labels::Values(_), true) => return Err(Error::invalid(
                    "y: a classification task's targets are class indices; pass Labels::Classes",
                )),
            };
        if y_len != want {
            return Err(Error::invalid(format!(
                "y has {} values, but x holds {} samples and each takes {} target value(s), so y needs {}",
                y_len, n, self.layout.y_per_sample, want
            )));
        }
        let n = to_i64(n)?;
        check(unsafe { ffi::dash_task_set_data(self.raw(), split.raw(), x.as_ptr(), y_ptr, n) })
    }

    /// Loads a split from files: .npy, .idx or .idx.gz (see dash.h).
    pub fn load_files(
        &mut self,
        split: Split,
        x_path: impl AsRef<Path>,
        y_path: impl AsRef<Path>,
    ) -> Result<()> {
        let x = c_path(x_path.as_ref(), "x path")?;
        let y = c_path(y_path.as_ref(), "y path")?;
        check(unsafe { ffi::dash_task_load_files(self.raw(), split.raw(), x.as_ptr(), y.as_ptr()) })
    }

    /// Number of samples a split holds (0 if unset).
    pub fn split_size(&self, split: Split) -> Result<usize> {
        let mut n: i64 = 0;
        check(unsafe { ffi::dash_task_split_size(self.raw(), split.raw(), &mut n) })?;
        usize::try_from(n).map_err(|_| {
            Error::new(
                Status::Internal,
                format!("dash_task_split_size returned {}", n),
            )
        })
    }

    /// The task spec with defaults filled in, as JSON.
    pub fn to_json(&self) -> Result<String> {
        let mut out: *mut c_char = ptr::null_mut();
        check(unsafe { ffi::dash_task_to_json(self.raw(), &mut out) })?;
        Ok(unsafe { take_string(out) })
    }

    /// DASH's search on the train split, then the hyperparameter grid.
    /// `options_json` as listed by [`options_describe`] ("" for defaults).
    /// See the crate docs for how `progress` cancels and what a panic in it does.
    pub fn search(
        &self,
        options_json: &str,
        progress: Option<&mut dyn FnMut(&Progress) -> bool>,
    ) -> Result<Arch> {
        let options = c_string(options_json, "the options")?;
        let raw_task = self.raw();
        let mut out: *mut ffi::dash_arch = ptr::null_mut();
        let (result, panicked) = call_with_progress(progress, |f, user| unsafe {
            ffi::dash_search(raw_task, options.as_ptr(), f, user, &mut out)
        });
        let arch = result.map(|()| Arch { raw: out });
        if let Some(payload) = panicked {
            drop(arch);
            panic::resume_unwind(payload);
        }
        arch
    }

    /// Trains the network `arch` on the train split and returns the weights
    /// that validated best. Options and `progress` as for [`Task::search`].
    pub fn retrain(
        &self,
        arch: &Arch,
        options_json: &str,
        progress: Option<&mut dyn FnMut(&Progress) -> bool>,
    ) -> Result<Model> {
        let options = c_string(options_json, "the options")?;
        let raw_task = self.raw();
        let mut out: *mut ffi::dash_model = ptr::null_mut();
        let (result, panicked) = call_with_progress(progress, |f, user| unsafe {
            ffi::dash_retrain(raw_task, arch.raw, options.as_ptr(), f, user, &mut out)
        });
        let model = result.and_then(|()| unsafe { Model::from_raw(out) });
        if let Some(payload) = panicked {
            drop(model);
            panic::resume_unwind(payload);
        }
        model
    }
}

// ---- Architectures --------------------------------------------------------------------

/// A searched architecture and its hyperparameters (owns a `dash_arch`).
pub struct Arch {
    raw: *mut ffi::dash_arch,
}

// Send: no thread affinity. Sync: a dash_arch is immutable once made, and
// every call but dash_arch_free (in Drop) only reads it.
unsafe impl Send for Arch {}
unsafe impl Sync for Arch {}

impl Drop for Arch {
    fn drop(&mut self) {
        unsafe { ffi::dash_arch_free(self.raw) }
    }
}

impl Arch {
    /// `{"backbone", "layers": [{"kernel_size", "dilation"}, ...], "hyperparameters"}`.
    pub fn to_json(&self) -> Result<String> {
        let mut out: *mut c_char = ptr::null_mut();
        check(unsafe { ffi::dash_arch_to_json(self.raw, &mut out) })?;
        Ok(unsafe { take_string(out) })
    }

    /// What the search that made it recorded: `{"architecture", "report": {"search"}}`
    /// (`report` is `{}` for a plain or parsed arch); [`report_html`] renders it.
    pub fn info(&self) -> Result<String> {
        let mut out: *mut c_char = ptr::null_mut();
        check(unsafe { ffi::dash_arch_info(self.raw, &mut out) })?;
        Ok(unsafe { take_string(out) })
    }

    /// The inverse of [`Arch::to_json`]; "hyperparameters" may be left out.
    pub fn from_json(json: &str) -> Result<Arch> {
        check_abi()?;
        let json = c_string(json, "the architecture JSON")?;
        let mut raw: *mut ffi::dash_arch = ptr::null_mut();
        check(unsafe { ffi::dash_arch_from_json(json.as_ptr(), &mut raw) })?;
        Ok(Arch { raw })
    }

    /// The plain backbone for a task (k=3, d=1 everywhere): DASH's baseline.
    pub fn plain(task: &Task) -> Result<Arch> {
        let mut raw: *mut ffi::dash_arch = ptr::null_mut();
        check(unsafe { ffi::dash_arch_plain(task.raw(), &mut raw) })?;
        Ok(Arch { raw })
    }
}

// ---- Models -----------------------------------------------------------------------------

/// A trained network (owns a `dash_model`).
pub struct Model {
    raw: *mut ffi::dash_model,
    input_size: usize,
    output_size: usize,
}

// Send: no thread affinity. Sync: the library locks a model itself, and every
// call but dash_model_free (in Drop, with no borrow left) may run on one model
// from many threads at once.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { ffi::dash_model_free(self.raw) }
    }
}

impl Model {
    /// Takes ownership of `raw` (freed even if this fails) and reads the sizes
    /// `infer` checks slices against.
    unsafe fn from_raw(raw: *mut ffi::dash_model) -> Result<Model> {
        let mut model = Model {
            raw,
            input_size: 0,
            output_size: 0,
        };
        let (mut input, mut output) = (0i64, 0i64);
        check(ffi::dash_model_input_size(raw, &mut input))?;
        check(ffi::dash_model_output_size(raw, &mut output))?;
        model.input_size = size_from("dash_model_input_size", input)?;
        model.output_size = size_from("dash_model_output_size", output)?;
        Ok(model)
    }

    /// Loads a model file written by [`Model::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        check_abi()?;
        let path = c_path(path.as_ref(), "model path")?;
        let mut raw: *mut ffi::dash_model = ptr::null_mut();
        check(unsafe { ffi::dash_model_load(path.as_ptr(), &mut raw) })?;
        unsafe { Model::from_raw(raw) }
    }

    /// Writes the model to one file, atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = c_path(path.as_ref(), "model path")?;
        check(unsafe { ffi::dash_model_save(self.raw, path.as_ptr()) })
    }

    /// Writes the model as an ONNX file (atomically) that computes what
    /// `infer` does, for runtimes without LibTorch: input "input" [batch,
    /// input_shape...], output "output". `options_json`: "" for the defaults,
    /// or e.g. `{"opset": 17, "dynamic_batch": false, "batch_size": 8,
    /// "normalize_input": false}` (see `dash_model_export_onnx`).
    pub fn export_onnx(&self, path: impl AsRef<Path>, options_json: &str) -> Result<()> {
        let path = c_path(path.as_ref(), "ONNX path")?;
        let options = c_string(options_json, "ONNX export options")?;
        check(unsafe { ffi::dash_model_export_onnx(self.raw, path.as_ptr(), options.as_ptr()) })
    }

    /// Where `infer` and `evaluate` compute: "cpu" (where every model
    /// starts), "cuda" (`Status::Unsupported` without a CUDA build and a GPU)
    /// or "auto". Inputs and outputs stay in host memory. Waits for the calls
    /// running on the model on other threads.
    pub fn set_device(&self, device: &str) -> Result<()> {
        let device = c_string(device, "device")?;
        check(unsafe { ffi::dash_model_set_device(self.raw, device.as_ptr()) })
    }

    /// Floats one input sample holds (prod(input_shape)).
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// Values `infer` writes per sample (`dash_model_output_size`).
    pub fn output_size(&self) -> usize {
        self.output_size
    }

    /// Runs `n` raw samples (`x.len() == n * input_size()`) and returns
    /// `n * output_size()` values. Safe to call from many threads at once.
    pub fn infer(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let len = n
            .checked_mul(self.output_size)
            .ok_or_else(|| Error::invalid(format!("{} samples is too many", n)))?;
        let mut out = vec![0.0f32; len];
        self.infer_into(x, n, &mut out)?;
        Ok(out)
    }

    /// As [`Model::infer`], writing into `out` (`n * output_size()` values).
    pub fn infer_into(&self, x: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
        if n.checked_mul(self.input_size) != Some(x.len()) {
            return Err(Error::invalid(format!(
                "x has {} floats, but {} samples of {} floats each need {}",
                x.len(),
                n,
                self.input_size,
                n.saturating_mul(self.input_size)
            )));
        }
        if n.checked_mul(self.output_size) != Some(out.len()) {
            return Err(Error::invalid(format!(
                "out has {} floats, but {} samples of {} outputs each need {}",
                out.len(),
                n,
                self.output_size,
                n.saturating_mul(self.output_size)
            )));
        }
        let (n, out_len) = (to_i64(n)?, to_i64(out.len())?);
        check(unsafe { ffi::dash_infer(self.raw, x.as_ptr(), n, out.as_mut_ptr(), out_len) })
    }

    /// Loss and metric on a split of a task with the same spec, as JSON:
    /// `{"split", "samples", "loss", "metric_name", "metric", "higher_is_better"}`.
    /// [`Task::interrupt`] makes it fail with [`Status::Cancelled`] once its
    /// pass is done.
    pub fn evaluate(&self, task: &Task, split: Split) -> Result<String> {
        let mut out: *mut c_char = ptr::null_mut();
        check(unsafe { ffi::dash_evaluate(self.raw, task.raw(), split.raw(), &mut out) })?;
        Ok(unsafe { take_string(out) })
    }

    /// As [`Model::evaluate`], with options (`dash_evaluate_with`): "" or
    /// "{}" is `evaluate`; `threads`, `device` and the data-parallel ones
    /// (`world_size`, `rank`, `init`, `dist_backend`, `dist_timeout_s`,
    /// `data_sharded`) score the split over the ranks of a data-parallel run,
    /// every rank getting the same report (with a `"distributed"` entry). An
    /// option of search or retrain is an `InvalidArgument` error naming it.
    pub fn evaluate_with(&self, task: &Task, split: Split, options_json: &str) -> Result<String> {
        let options = c_string(options_json, "the options")?;
        let mut out: *mut c_char = ptr::null_mut();
        check(unsafe {
            ffi::dash_evaluate_with(
                self.raw,
                task.raw(),
                split.raw(),
                options.as_ptr(),
                &mut out,
            )
        })?;
        Ok(unsafe { take_string(out) })
    }

    /// Task spec, architecture, hyperparameters, normaliser, training report
    /// and library version of the model, as JSON.
    pub fn info(&self) -> Result<String> {
        let mut out: *mut c_char = ptr::null_mut();
        check(unsafe { ffi::dash_model_info(self.raw, &mut out) })?;
        Ok(unsafe { take_string(out) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_html_renders_a_record_and_refuses_anything_else() {
        let html = report_html(r#"{"training": {"metric_name": "accuracy", "test_metric": 0.75}}"#).unwrap();
        assert!(html.contains(r#"<section id="summary">"#), "{}", html);
        assert!(html.contains("0.75"), "{}", html);
        let err = report_html("[1, 2]").unwrap_err();
        assert_eq!(err.status, Status::InvalidArgument);
        assert!(err.message.contains("dash_model_info"), "{}", err.message);
    }

    #[test]
    fn layout_per_kind() {
        let cases = [
            (
                r#"{"kind":"classification","input_shape":[3,4,5],"num_classes":7}"#,
                60,
                1,
                true,
            ),
            (
                r#"{"kind":"multilabel","input_shape":[2,8],"num_classes":5}"#,
                16,
                5,
                false,
            ),
            (
                r#"{"kind":"regression","input_shape":[1,8],"num_outputs":3}"#,
                8,
                3,
                false,
            ),
            (
                r#"{"kind":"dense","input_shape":[2,4,6],"num_outputs":3}"#,
                48,
                72,
                false,
            ),
        ];
        for (spec, x, y, classes) in cases {
            let l = Task::new(spec).unwrap().layout;
            assert_eq!(
                (l.x_per_sample, l.y_per_sample, l.classes),
                (x, y, classes),
                "{}",
                spec
            );
        }
    }

    #[test]
    fn status_codes_round_trip() {
        for code in 0..9 {
            assert_eq!(Status::from_code(code).code(), code);
        }
        assert_eq!(Status::from_code(2), Status::IoError);
        assert_eq!(Status::from_code(42), Status::Unknown(42));
        let e = Error::new(Status::Cancelled, "stopped");
        assert_eq!(e.to_string(), "DASH_CANCELLED: stopped");
    }

    fn short_event(size: usize) -> ffi::dash_progress {
        ffi::dash_progress {
            size,
            stage: b"search\0".as_ptr() as *const c_char,
            epoch: 2,
            epochs: 3,
            step: 4,
            steps: 5,
            loss: 0.5,
            metric: 0.25,
            elapsed_s: 1.0,
            eta_s: 2.0,
            warning: b"few steps\0".as_ptr() as *const c_char,
        }
    }

    #[test]
    fn progress_reads_only_fields_within_size() {
        let full = short_event(std::mem::size_of::<ffi::dash_progress>());
        let p = unsafe { Progress::from_raw(&full) };
        assert_eq!(
            (p.stage.as_str(), p.epoch, p.steps, p.eta_s, p.warning.as_str()),
            ("search", 2, 5, 2.0, "few steps")
        );
        // An older library whose struct ends after `steps`.
        let old = short_event(std::mem::size_of::<usize>() + std::mem::size_of::<usize>() + 32);
        let p = unsafe { Progress::from_raw(&old) };
        assert_eq!((p.stage.as_str(), p.steps), ("search", 5));
        assert!(p.loss.is_nan() && p.eta_s.is_nan() && p.warning.is_empty());
        // A size that cuts through `stage` leaves it out.
        let cut = short_event(std::mem::size_of::<usize>() + 3);
        let p = unsafe { Progress::from_raw(&cut) };
        assert_eq!((p.stage.as_str(), p.epoch), ("", 0));
    }
}
