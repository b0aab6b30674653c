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
// A Task may be shared between goroutines: its methods run one at a time.
// A progress callback of Search or Retrain must not call methods of the
// task, arch or model of the running call (they would wait for the call to
// end, which waits for the callback).
type Task struct {
	mu    sync.Mutex
	p     *C.dash_task
	shape shapes
}

// shapes is what the binding must know to pass slices of the right length:
// C reads x and y through bare pointers and cannot check their length.
type shapes struct {
	kind       string
	inputShape []int64
	inputSize  int // floats per sample of x
	targetSize int // float32 targets per sample; 0 for classification (one int64 class)
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
	text, err := t.JSON()
	if err == nil {
		t.shape, err = parseShapes("dash_task_to_json", text)
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// parseShapes reads the sizes of a filled-in task spec (dash_task_to_json,
// or the "task" of dash_model_info).
func parseShapes(where, specJSON string) (shapes, error) {
	var spec struct {
		Kind       string  `json:"kind"`
		InputShape []int64 `json:"input_shape"`
		NumClasses int64   `json:"num_classes"`
		NumOutputs int64   `json:"num_outputs"`
	}
	bad := func(why string) (shapes, error) {
		return shapes{}, errorf(Internal, "%s gave a task spec this binding cannot read (%s): %s", where, why, specJSON)
	}
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return bad(err.Error())
	}
	if len(spec.InputShape) < 2 {
		return bad("input_shape has fewer than 2 dimensions")
	}
	const maxSize = int64(1) << 40
	product := func(dims []int64) (int, bool) {
		n := int64(1)
		for _, d := range dims {
			if d < 1 || d > maxSize/n {
				return 0, false
			}
			n *= d
		}
		return int(n), true
	}
	s := shapes{kind: spec.Kind, inputShape: spec.InputShape}
	var ok bool
	if s.inputSize, ok = product(spec.InputShape); !ok {
		return bad("bad input_shape")
	}
	switch spec.Kind {
	case "classification":
		s.targetSize = 0
	case "multilabel":
		s.targetSize, ok = product([]int64{spec.NumClasses})
	case "regression":
		s.targetSize, ok = product([]int64{spec.NumOutputs})
	case "dense":
		s.targetSize, ok = product(append([]int64{spec.NumOutputs}, spec.InputShape[1:]...))
	default:
		// A kind newer than this binding: SetData* refuse it (targetSize -1).
		s.targetSize, ok = -1, true
	}
	if !ok {
		return bad("bad num_classes or num_outputs")
	}
	return s, nil
}

func closedError(op, what string) error {
	return errorf(InvalidArgument, "%s: the %s is closed", op, what)
}

// lock holds the task for one call. The caller unlocks; its deferred Unlock
// also keeps t reachable, so the finalizer cannot free the handle mid-call.
func (t *Task) lock(op string) (*C.dash_task, error) {
	if t == nil {
		return nil, errorf(InvalidArgument, "%s: the task is nil", op)
	}
	t.mu.Lock()
	if t.p == nil {
		t.mu.Unlock()
		return nil, closedError(op, "task")
	}
	return t.p, nil
}

// Close frees the task. It is safe to call more than once.
func (t *Task) Close() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p != nil {
		C.dash_task_free(t.p)
		t.p = nil
	}
	runtime.SetFinalizer(t, nil)
	return nil
}

// xLen checks that x holds n samples of the input shape.
func (t *Task) xLen(op string, x []float32, n int) error {
	if n > 0 && t.shape.inputSize > int(^uint(0)>>1)/n {
		return errorf(InvalidArgument, "%s: %d samples are too many", op, n)
	}
	if want := n * t.shape.inputSize; len(x) != want {
		return errorf(InvalidArgument,
			"%s: x has %d floats, but %d samples of input_shape %v need %d",
			op, len(x), n, t.shape.inputShape, want)
	}
	return nil
}

// SetData copies the samples of a classification task into a split,
// replacing what it held: classes holds one class index per sample in
// [0, num_classes), and x holds len(classes) samples of input_shape, C order.
func (t *Task) SetData(split Split, x []float32, classes []int64) error {
	const op = "Task.SetData"
	p, err := t.lock(op)
	if err != nil {
		return err
	}
	defer t.mu.Unlock()
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
	p, err := t.lock(op)
	if err != nil {
		return err
	}
	defer t.mu.Unlock()
	switch {
	case t.shape.kind == "classification":
		return errorf(InvalidArgument, "%s: this is a classification task: give int64 classes with SetData", op)
	case t.shape.targetSize < 0:
		return errorf(Unsupported, "%s: this binding does not know the target shape of %q tasks", op, t.shape.kind)
	}
	if len(x)%t.shape.inputSize != 0 {
		return errorf(InvalidArgument, "%s: x has %d floats, not a whole number of samples of input_shape %v (%d floats each)",
			op, len(x), t.shape.inputShape, t.shape.inputSize)
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
	p, err := t.lock("Task.LoadFiles")
	if err != nil {
		return err
	}
	defer t.mu.Unlock()
	cx, cy := cString(xPath), cString(yPath)
	defer freeCString(cx)
	defer freeCString(cy)
	var msg *C.char
	return check(C.dashgo_task_load_files(p, C.dash_split(split), cx, cy, &msg), msg)
}

// SplitSize is the number of samples a split holds (0 if unset).
func (t *Task) SplitSize(split Split) (int, error) {
	p, err := t.lock("Task.SplitSize")
	if err != nil {
		return 0, err
	}
	defer t.mu.Unlock()
	var n C.int64_t
	var msg *C.char
	if err := check(C.dashgo_task_split_size(p, C.dash_split(split), &n, &msg), msg); err != nil {
		return 0, err
	}
	return int(n), nil
}

// JSON is the task spec with defaults filled in.
func (t *Task) JSON() (string, error) {
	p, err := t.lock("Task.JSON")
	if err != nil {
		return "", err
	}
	defer t.mu.Unlock()
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
// cancel, which makes Search return an *Error with status Cancelled. If
// progress panics, Search cancels and then panics with a *CallbackPanic.
func (t *Task) Search(optionsJSON string, progress func(Progress) bool) (*Arch, error) {
	p, err := t.lock("Task.Search")
	if err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
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
	p, err := t.lock(op)
	if err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	a, err := arch.lock(op)
	if err != nil {
		return nil, err
	}
	defer arch.mu.Unlock()
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
	return fmt.Sprintf("dashnas.Task(%s %v)", t.shape.kind, t.shape.inputShape)
}
