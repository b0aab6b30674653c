package dashnas

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Task is a task spec and its data splits (dash_task).
//
// A Task may be shared between goroutines. The methods that only read it
// (Search, Retrain, SplitSize, JSON, PlainArch, Model.Evaluate, ...) run at
// once, as the library allows; SetData, SetDataValues, LoadFiles and Close
// change it and wait for the others to end. Interrupt runs at any time.
// A progress callback of Search or Retrain may call Interrupt, but no other
// method of the task, arch or model of the running call (a waiting SetData
// would make it wait for the call to end, which waits for the callback).
type Task struct {
	// mu is the library's rule for a task: calls that read it share it,
	// calls that change or free it hold it alone.
	mu sync.RWMutex
	// freeMu guards p against Close for Interrupt, which must not wait for
	// the readers holding mu: Close holds both.
	freeMu sync.RWMutex
	p      *C.dash_task
	shape  shapes
}

// shapes is what the binding must know to pass slices of the right length:
// C reads x and y through bare pointers and cannot check their length.
type shapes struct {
	kind       string
	inputSize  int // floats per sample of x (dash_task_input_size)
	targetSize int // values per target (dash_task_target_size); one int64 for classification
}

// NewTask makes a task from a spec:
//
//	{"kind": "classification" | "multilabel" | "regression" | "dense",
//	 "input_shape": [channels, length] or [channels, height, width],
//	 "num_classes": N (classification, multilabel), "num_outputs": N (regression, dense),
//	 "metric", "loss", "pos_weight": optional}
//
// See dash_task_create in dash.h for the details.
func NewTask(specJSON string) (*Task, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	spec := cString(specJSON)
	defer freeCString(spec)
	var p *C.dash_task
	var msg *C.char
	if err := check(C.dashgo_task_create(spec, &p, &msg), msg); err != nil {
		return nil, err
	}
	t := &Task{p: p}
	runtime.SetFinalizer(t, (*Task).Close)
	if err := t.readShapes(); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// readShapes asks the library for the sizes, and reads the kind (which says
// whether targets are int64 classes or floats) from the filled-in spec.
func (t *Task) readShapes() error {
	var in, target C.int64_t
	var msg *C.char
	if err := check(C.dashgo_task_input_size(t.p, &in, &msg), msg); err != nil {
		return err
	}
	if err := check(C.dashgo_task_target_size(t.p, &target, &msg), msg); err != nil {
		return err
	}
	text, err := t.JSON()
	if err != nil {
		return err
	}
	var spec struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal([]byte(text), &spec); err != nil || spec.Kind == "" {
		return errorf(Internal, "dash_task_to_json gave a spec without a kind this binding can read: %s", text)
	}
	const maxSize = int64(1) << 40
	if in < 1 || int64(in) > maxSize || target < 1 || int64(target) > maxSize {
		return errorf(Internal, "the library gave sizes %d (input) and %d (target) this binding cannot use", in, target)
	}
	t.shape = shapes{kind: spec.Kind, inputSize: int(in), targetSize: int(target)}
	return nil
}

func closedError(op, what string) error {
	return errorf(InvalidArgument, "%s: the %s is closed", op, what)
}

// read holds the task shared for a call that only reads it; write holds it
// alone. The caller unlocks with the returned function; deferring it also
// keeps t reachable, so the finalizer cannot free the handle mid-call.
func (t *Task) read(op string) (*C.dash_task, func(), error) { return t.hold(op, true) }

func (t *Task) write(op string) (*C.dash_task, func(), error) { return t.hold(op, false) }

func (t *Task) hold(op string, shared bool) (*C.dash_task, func(), error) {
	if t == nil {
		return nil, nil, errorf(InvalidArgument, "%s: the task is nil", op)
	}
	unlock := t.mu.Unlock
	if shared {
		t.mu.RLock()
		unlock = t.mu.RUnlock
	} else {
		t.mu.Lock()
	}
	if t.p == nil {
		unlock()
		return nil, nil, closedError(op, "task")
	}
	return t.p, unlock, nil
}

// Close frees the task, after the calls running on it. It is safe to call
// more than once.
func (t *Task) Close() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.freeMu.Lock()
	defer t.freeMu.Unlock()
	if t.p != nil {
		C.dash_task_free(t.p)
		t.p = nil
	}
	runtime.SetFinalizer(t, nil)
	return nil
}

// Interrupt makes every Search, Retrain and Model.Evaluate running on the
// task at this moment return an *Error with status Cancelled: Search and
// Retrain at their next training step, Evaluate once its pass is done.
// Calls that start afterwards are not affected. It never waits for them, and
// may be called from any goroutine at any time, progress callbacks included.
func (t *Task) Interrupt() error {
	const op = "Task.Interrupt"
	if t == nil {
		return errorf(InvalidArgument, "%s: the task is nil", op)
	}
	t.freeMu.RLock()
	defer t.freeMu.RUnlock()
	if t.p == nil {
		return closedError(op, "task")
	}
	var msg *C.char
	return check(C.dashgo_task_interrupt(t.p, &msg), msg)
}

// InputSize is the number of floats one sample of x holds: prod(input_shape).
func (t *Task) InputSize() int { return t.shape.inputSize }

// TargetSize is the number of values one target holds: 1 for classification
// (one int64 class), num_classes for multilabel, num_outputs for regression,
// num_outputs * prod(spatial) for dense.
func (t *Task) TargetSize() int { return t.shape.targetSize }

// xLen checks that x holds n samples of the input shape.
func (t *Task) xLen(op string, x []float32, n int) error {
	if n > 0 && t.shape.inputSize > int(^uint(0)>>1)/n {
		return errorf(InvalidArgument, "%s: %d samples are too many", op, n)
	}
	if want := n * t.shape.inputSize; len(x) != want {
		return errorf(InvalidArgument,
			"%s: x has %d floats, but %d samples of %d floats each (prod(input_shape)) need %d",
			op, len(x), n, t.shape.inputSize, want)
	}
	return nil
}

// SetData copies the samples of a classification task into a split,
// replacing what it held: classes holds one class index per sample in
// [0, num_classes), and x holds len(classes) samples of input_shape, C order.
func (t *Task) SetData(split Split, x []float32, classes []int64) error {
	const op = "Task.SetData"
	p, unlock, err := t.write(op)
	if err != nil {
		return err
	}
	defer unlock()
	if t.shape.kind != "classification" {
		return errorf(InvalidArgument, "%s: class labels are for classification tasks; this task is %q: use SetDataValues", op, t.shape.kind)
	}
	n := len(classes)
	if err := t.xLen(op, x, n); err != nil {
		return err
	}
	var msg *C.char
	st := C.dashgo_task_set_data(p, C.dash_split(split), floatPtr(x), longPtr(classes), C.int64_t(n), &msg)
	return check(st, msg)
}

// SetDataValues copies the samples of a multilabel, regression or dense task
// into a split, replacing what it held. x holds n samples of input_shape and
// y n float32 targets (multilabel: [n, num_classes] of 0/1; regression:
// [n, num_outputs]; dense: [n, num_outputs, spatial...]); n is len(x) divided
// by the size of one sample.
func (t *Task) SetDataValues(split Split, x []float32, y []float32) error {
	const op = "Task.SetDataValues"
	p, unlock, err := t.write(op)
	if err != nil {
		return err
	}
	defer unlock()
	if t.shape.kind == "classification" {
		return errorf(InvalidArgument, "%s: this is a classification task: give int64 classes with SetData", op)
	}
	if len(x)%t.shape.inputSize != 0 {
		return errorf(InvalidArgument, "%s: x has %d floats, not a whole number of samples of %d floats each (prod(input_shape))",
			op, len(x), t.shape.inputSize)
	}
	n := len(x) / t.shape.inputSize
	if want := n * t.shape.targetSize; len(y) != want {
		return errorf(InvalidArgument, "%s: y has %d floats, but %d samples of a %q task need %d (%d each)",
			op, len(y), n, t.shape.kind, want, t.shape.targetSize)
	}
	var msg *C.char
	st := C.dashgo_task_set_data(p, C.dash_split(split), floatPtr(x), unsafe.Pointer(floatPtr(y)), C.int64_t(n), &msg)
	return check(st, msg)
}

// LoadFiles loads a split from files: .npy (float32, float64, uint8, int64;
// C order), .idx or .idx.gz (as Fashion-MNIST ships), with the same checks as
// SetData.
func (t *Task) LoadFiles(split Split, xPath, yPath string) error {
	p, unlock, err := t.write("Task.LoadFiles")
	if err != nil {
		return err
	}
	defer unlock()
	cx, cy := cString(xPath), cString(yPath)
	defer freeCString(cx)
	defer freeCString(cy)
	var msg *C.char
	return check(C.dashgo_task_load_files(p, C.dash_split(split), cx, cy, &msg), msg)
}

// SplitSize is the number of samples a split holds (0 if unset).
func (t *Task) SplitSize(split Split) (int, error) {
	p, unlock, err := t.read("Task.SplitSize")
	if err != nil {
		return 0, err
	}
	defer unlock()
	var n C.int64_t
	var msg *C.char
	if err := check(C.dashgo_task_split_size(p, C.dash_split(split), &n, &msg), msg); err != nil {
		return 0, err
	}
	return int(n), nil
}

// JSON is the task spec with defaults filled in.
func (t *Task) JSON() (string, error) {
	p, unlock, err := t.read("Task.JSON")
	if err != nil {
		return "", err
	}
	defer unlock()
	var out, msg *C.char
	if err := check(C.dashgo_task_to_json(p, &out, &msg), msg); err != nil {
		return "", err
	}
	return takeString(out), nil
}

// Search runs DASH's search on the train split (validating on valid, carved
// from train if unset), then the hyperparameter grid (option "hpo").
// optionsJSON is a JSON object ("" for defaults; OptionsDescribe lists them).
// progress may be nil; it runs on the calling goroutine and returns false to
// cancel, which makes Search return an *Error with status Cancelled (as
// Interrupt does from any goroutine). If
// progress panics, Search cancels and then panics with a *CallbackPanic.
func (t *Task) Search(optionsJSON string, progress func(Progress) bool) (*Arch, error) {
	p, unlock, err := t.read("Task.Search")
	if err != nil {
		return nil, err
	}
	defer unlock()
	opts := cString(optionsJSON)
	defer freeCString(opts)
	handle, cb, stop := startCallback(progress)
	defer stop()
	var out *C.dash_arch
	var msg *C.char
	st := C.dashgo_search(p, opts, handle, &out, &msg)
	err = check(st, msg)
	if err == nil && cb.hasPanicked() {
		C.dash_arch_free(out) // a cancel the library did not honour
	}
	cb.repanic()
	if err != nil {
		return nil, err
	}
	return newArch(out), nil
}

// Retrain trains the discrete network arch on the train split, keeping the
// weights that validated best. Options, progress and panics as for Search.
func (t *Task) Retrain(arch *Arch, optionsJSON string, progress func(Progress) bool) (*Model, error) {
	const op = "Task.Retrain"
	p, unlock, err := t.read(op)
	if err != nil {
		return nil, err
	}
	defer unlock()
	a, unlockArch, err := arch.read(op)
	if err != nil {
		return nil, err
	}
	defer unlockArch()
	opts := cString(optionsJSON)
	defer freeCString(opts)
	handle, cb, stop := startCallback(progress)
	defer stop()
	var out *C.dash_model
	var msg *C.char
	st := C.dashgo_retrain(p, a, opts, handle, &out, &msg)
	err = check(st, msg)
	if err == nil && cb.hasPanicked() {
		C.dash_model_free(out) // a cancel the library did not honour
	}
	cb.repanic()
	if err != nil {
		return nil, err
	}
	return newModel(out)
}

// String describes the task for logs.
func (t *Task) String() string {
	if t == nil {
		return "dashnas.Task(nil)"
	}
	return fmt.Sprintf("dashnas.Task(%s, %d floats per sample)", t.shape.kind, t.shape.inputSize)
}
