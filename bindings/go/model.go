package dashnas

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"runtime"
	"sync"
)

// Model is a trained network, ready to infer (dash_model).
//
// Every method may run from many goroutines at once: the library locks a
// model itself (SetDevice waits for the calls running on it). Only Close
// waits for the others and runs alone.
type Model struct {
	// mu guards p against Close only: every call shares it, Close holds it alone.
	mu         sync.RWMutex
	p          *C.dash_model
	inputSize  int // floats Infer reads per sample
	outputSize int // values Infer gives per sample
}

// newModel takes ownership of p, freeing it if the sizes cannot be read.
func newModel(p *C.dash_model) (*Model, error) {
	m := &Model{p: p}
	runtime.SetFinalizer(m, (*Model).Close)
	if err := m.readSizes(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func (m *Model) readSizes() error {
	var in, out C.int64_t
	var msg *C.char
	if err := check(C.dashgo_model_input_size(m.p, &in, &msg), msg); err != nil {
		return err
	}
	if err := check(C.dashgo_model_output_size(m.p, &out, &msg), msg); err != nil {
		return err
	}
	const maxSize = int64(1) << 40
	if in < 1 || int64(in) > maxSize || out < 1 || int64(out) > maxSize {
		return errorf(Internal, "the library gave sizes %d (input) and %d (output) this binding cannot use", in, out)
	}
	m.inputSize, m.outputSize = int(in), int(out)
	return nil
}

// LoadModel reads a model file written by Model.Save. A missing or
// unreadable file is IOError; a truncated, corrupted or foreign one BadFile.
func LoadModel(path string) (*Model, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	s := cString(path)
	defer freeCString(s)
	var p *C.dash_model
	var msg *C.char
	if err := check(C.dashgo_model_load(s, &p, &msg), msg); err != nil {
		return nil, err
	}
	return newModel(p)
}

// use holds the model open for one call (shared with every other call; only
// Close excludes it). The caller unlocks with the returned function;
// deferring it also keeps m reachable, so the finalizer cannot free the
// handle mid-call.
func (m *Model) use(op string) (*C.dash_model, func(), error) {
	if m == nil {
		return nil, nil, errorf(InvalidArgument, "%s: the model is nil", op)
	}
	m.mu.RLock()
	if m.p == nil {
		m.mu.RUnlock()
		return nil, nil, closedError(op, "model")
	}
	return m.p, m.mu.RUnlock, nil
}

// InputSize is the number of floats Infer reads per sample: prod(input_shape).
func (m *Model) InputSize() int { return m.inputSize }

// OutputSize is the number of values Infer gives per sample: num_classes
// (classification and multilabel logits), num_outputs (regression),
// num_outputs * prod(spatial) (dense).
func (m *Model) OutputSize() int { return m.outputSize }

// Infer runs n samples given raw, as to the task (the model normalises
// them): x holds n samples of the task's input_shape, C order. It returns
// n * OutputSize values. Safe to call from many goroutines at once. Results
// are bit-identical for the same n; the library runs samples in chunks, so
// they may differ in the last bit between calls with different n.
func (m *Model) Infer(x []float32, n int) ([]float32, error) {
	const op = "Model.Infer"
	p, unlock, err := m.use(op)
	if err != nil {
		return nil, err
	}
	defer unlock()
	in := m.inputSize
	if n > 0 && (in > int(^uint(0)>>1)/n || m.outputSize > int(^uint(0)>>1)/n) {
		return nil, errorf(InvalidArgument, "%s: %d samples are too many", op, n)
	}
	if n >= 0 && len(x) != n*in {
		return nil, errorf(InvalidArgument, "%s: x has %d floats, but %d samples of %d floats each (InputSize) need %d",
			op, len(x), n, in, n*in)
	}
	outLen := 0
	if n > 0 {
		outLen = n * m.outputSize
	}
	out := make([]float32, outLen)
	var msg *C.char
	st := C.dashgo_infer(p, floatPtr(x), C.int64_t(n), floatPtr(out), C.int64_t(outLen), &msg)
	if err := check(st, msg); err != nil {
		return nil, err
	}
	return out, nil
}

// Evaluate gives the loss and metric of the model on a split of a task with
// the same spec, as JSON: {"split", "samples", "loss", "metric_name",
// "metric", "higher_is_better"}. Task.Interrupt makes it return Cancelled
// once its pass is done.
func (m *Model) Evaluate(task *Task, split Split) (string, error) {
	const op = "Model.Evaluate"
	p, unlock, err := m.use(op)
	if err != nil {
		return "", err
	}
	defer unlock()
	tp, unlockTask, err := task.read(op)
	if err != nil {
		return "", err
	}
	defer unlockTask()
	var out, msg *C.char
	if err := check(C.dashgo_evaluate(p, tp, C.dash_split(split), &out, &msg), msg); err != nil {
		return "", err
	}
	return takeString(out), nil
}

// EvaluateWith is Evaluate with options (dash_evaluate_with): "" or "{}" is
// Evaluate; threads, device and the data-parallel ones (world_size, rank,
// init, dist_backend, dist_timeout_s, data_sharded) score the split over the
// ranks of a data-parallel run, every rank getting the same report (with a
// "distributed" entry). An option of search or retrain is InvalidArgument,
// naming it.
func (m *Model) EvaluateWith(task *Task, split Split, optionsJSON string) (string, error) {
	const op = "Model.EvaluateWith"
	p, unlock, err := m.use(op)
	if err != nil {
		return "", err
	}
	defer unlock()
	tp, unlockTask, err := task.read(op)
	if err != nil {
		return "", err
	}
	defer unlockTask()
	o := cString(optionsJSON)
	defer freeCString(o)
	var out, msg *C.char
	if err := check(C.dashgo_evaluate_with(p, tp, C.dash_split(split), o, &out, &msg), msg); err != nil {
		return "", err
	}
	return takeString(out), nil
}

// Info is the model's task spec, architecture, hyperparameters, normaliser,
// training report and library version, as JSON.
func (m *Model) Info() (string, error) {
	p, unlock, err := m.use("Model.Info")
	if err != nil {
		return "", err
	}
	defer unlock()
	var out, msg *C.char
	if err := check(C.dashgo_model_info(p, &out, &msg), msg); err != nil {
		return "", err
	}
	return takeString(out), nil
}

// Save writes the model to one self-describing file, atomically: an existing
// file is replaced only whole.
func (m *Model) Save(path string) error {
	p, unlock, err := m.use("Model.Save")
	if err != nil {
		return err
	}
	defer unlock()
	s := cString(path)
	defer freeCString(s)
	var msg *C.char
	return check(C.dashgo_model_save(p, s, &msg), msg)
}

// ExportONNX writes the model as an ONNX file (atomically) that computes
// what Infer does, for runtimes without LibTorch: input "input" [batch,
// input_shape...], output "output". optionsJSON: "" for the defaults, or e.g.
// {"opset": 17, "dynamic_batch": false, "batch_size": 8, "normalize_input":
// false} (see dash_model_export_onnx).
func (m *Model) ExportONNX(path, optionsJSON string) error {
	p, unlock, err := m.use("Model.ExportONNX")
	if err != nil {
		return err
	}
	defer unlock()
	s := cString(path)
	defer freeCString(s)
	o := cString(optionsJSON)
	defer freeCString(o)
	var msg *C.char
	return check(C.dashgo_model_export_onnx(p, s, o, &msg), msg)
}

// SetDevice chooses where Infer and Evaluate compute: "cpu" (where every
// model starts), "cuda" (Unsupported without a CUDA build and a GPU) or
// "auto". Inputs and outputs stay in host memory. The library makes it wait
// for the calls running on the model, and holds new ones back meanwhile.
func (m *Model) SetDevice(device string) error {
	p, unlock, err := m.use("Model.SetDevice")
	if err != nil {
		return err
	}
	defer unlock()
	s := cString(device)
	defer freeCString(s)
	var msg *C.char
	return check(C.dashgo_model_set_device(p, s, &msg), msg)
}

// Close frees the model, after the calls running on it. It is safe to call
// more than once.
func (m *Model) Close() error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p != nil {
		C.dash_model_free(m.p)
		m.p = nil
	}
	runtime.SetFinalizer(m, nil)
	return nil
}
