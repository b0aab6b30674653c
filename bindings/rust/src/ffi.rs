//! Raw declarations of `include/dash/dash.h`, written by hand. The header is the
//! contract; read its comments for ownership, errors and threads. Everything
//! here is `unsafe` to use; the rest of the crate wraps it.

#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_void};

/// `DASH_ABI_VERSION` of the header these declarations were written from.
pub const DASH_ABI_VERSION: c_int = 2;
/// `DASH_VERSION_STRING` of that header.
pub const DASH_VERSION_STRING: &str = "0.2.0";

/// A C enum is an `int` on every platform we build for. Kept as an integer
/// (not a Rust enum) so a status this crate does not know cannot be undefined behaviour.
pub type dash_status = c_int;
pub const DASH_OK: dash_status = 0;
pub const DASH_INVALID_ARGUMENT: dash_status = 1;
pub const DASH_IO_ERROR: dash_status = 2;
pub const DASH_BAD_FILE: dash_status = 3;
pub const DASH_CANCELLED: dash_status = 4;
pub const DASH_UNSUPPORTED: dash_status = 5;
pub const DASH_OUT_OF_MEMORY: dash_status = 6;
pub const DASH_INTERNAL: dash_status = 7;

pub type dash_split = c_int;
pub const DASH_SPLIT_TRAIN: dash_split = 0;
pub const DASH_SPLIT_VALID: dash_split = 1;
pub const DASH_SPLIT_TEST: dash_split = 2;

/// Opaque handle types: distinct zero-sized types, never constructed in Rust.
#[repr(C)]
pub struct dash_task {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct dash_arch {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct dash_model {
    _opaque: [u8; 0],
}

/// One progress event. `size` is the filling library's `sizeof(dash_progress)`;
/// fields past it are absent (an older library).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dash_progress {
    pub size: usize,
    pub stage: *const c_char,
    pub epoch: i64,
    pub epochs: i64,
    pub step: i64,
    pub steps: i64,
    pub loss: f64,
    pub metric: f64,
    pub elapsed_s: f64,
    pub eta_s: f64,
    pub warning: *const c_char,
}

pub type dash_progress_fn =
    Option<unsafe extern "C" fn(event: *const dash_progress, user_data: *mut c_void) -> c_int>;

extern "C" {
    pub fn dash_status_name(status: dash_status) -> *const c_char;
    pub fn dash_last_error() -> *const c_char;

    pub fn dash_version() -> *const c_char;
    pub fn dash_abi_version() -> c_int;

    pub fn dash_task_create(spec_json: *const c_char, out: *mut *mut dash_task) -> dash_status;
    pub fn dash_task_set_data(
        task: *mut dash_task,
        split: dash_split,
        x: *const f32,
        y: *const c_void,
        n: i64,
    ) -> dash_status;
    pub fn dash_task_load_files(
        task: *mut dash_task,
        split: dash_split,
        x_path: *const c_char,
        y_path: *const c_char,
    ) -> dash_status;
    pub fn dash_task_split_size(
        task: *const dash_task,
        split: dash_split,
        out: *mut i64,
    ) -> dash_status;
    pub fn dash_task_to_json(task: *const dash_task, json_out: *mut *mut c_char) -> dash_status;
    pub fn dash_task_free(task: *mut dash_task);

    pub fn dash_search(
        task: *const dash_task,
        options_json: *const c_char,
        progress: dash_progress_fn,
        user_data: *mut c_void,
        out: *mut *mut dash_arch,
    ) -> dash_status;

    pub fn dash_arch_to_json(arch: *const dash_arch, json_out: *mut *mut c_char) -> dash_status;
    pub fn dash_arch_from_json(json: *const c_char, out: *mut *mut dash_arch) -> dash_status;
    pub fn dash_arch_plain(task: *const dash_task, out: *mut *mut dash_arch) -> dash_status;
    pub fn dash_arch_free(arch: *mut dash_arch);

    pub fn dash_retrain(
        task: *const dash_task,
        arch: *const dash_arch,
        options_json: *const c_char,
        progress: dash_progress_fn,
        user_data: *mut c_void,
        out: *mut *mut dash_model,
    ) -> dash_status;
    pub fn dash_model_output_size(model: *const dash_model, out: *mut i64) -> dash_status;
    pub fn dash_infer(
        model: *const dash_model,
        x: *const f32,
        n: i64,
        out: *mut f32,
        out_len: i64,
    ) -> dash_status;
    pub fn dash_evaluate(
        model: *const dash_model,
        task: *const dash_task,
        split: dash_split,
        report_json: *mut *mut c_char,
    ) -> dash_status;
    pub fn dash_model_info(model: *const dash_model, json_out: *mut *mut c_char) -> dash_status;
    pub fn dash_model_save(model: *const dash_model, path: *const c_char) -> dash_status;
    pub fn dash_model_load(path: *const c_char, out: *mut *mut dash_model) -> dash_status;
    pub fn dash_model_set_device(model: *mut dash_model, device: *const c_char) -> dash_status;
    pub fn dash_model_free(model: *mut dash_model);

    pub fn dash_options_describe(json_out: *mut *mut c_char) -> dash_status;
    pub fn dash_string_free(s: *mut c_char);

    // Added in ABI version 2.
    pub fn dash_task_input_size(task: *const dash_task, out: *mut i64) -> dash_status;
    pub fn dash_task_target_size(task: *const dash_task, out: *mut i64) -> dash_status;
    pub fn dash_model_input_size(model: *const dash_model, out: *mut i64) -> dash_status;
    pub fn dash_task_interrupt(task: *const dash_task) -> dash_status;

    // Added within ABI version 2: the run report.
    pub fn dash_report_html(run_json: *const c_char, html_out: *mut *mut c_char) -> dash_status;
    pub fn dash_arch_info(arch: *const dash_arch, json_out: *mut *mut c_char) -> dash_status;

    // Added within ABI version 2: ONNX export.
    pub fn dash_model_export_onnx(
        model: *const dash_model,
        path: *const c_char,
        options_json: *const c_char,
    ) -> dash_status;

    // Added within ABI version 2: evaluate with options.
    pub fn dash_evaluate_with(
        model: *const dash_model,
        task: *const dash_task,
        split: dash_split,
        options_json: *const c_char,
        report_json: *mut *mut c_char,
    ) -> dash_status;
}
