package dashnas

// This file exports goDashProgress, so its preamble may only declare (cgo
// copies it into two C files); the shims that call it live in shim.c.

// #include "shim.h"
import "C"

import (
	"fmt"
	"math"
	"runtime/cgo"
	"runtime/debug"
	"unsafe"
)

// Progress is one progress event of Search or Retrain. The library sends one
// after every training step and one at the end of every epoch (with
// Step == Steps and Metric from that epoch's validation); a stage that knows
// before its first step that its budget is too short to learn sends one with
// Step 0, a Warning and a NaN Loss first.
type Progress struct {
	Stage          string  // "search", "hpo" or "retrain"
	Epoch          int64   // 1-based, within the stage
	Epochs         int64   // planned epochs of the stage
	Step           int64   // 1-based, within the epoch; 0: before the stage's first step, with a Warning
	Steps          int64   // steps per epoch
	Loss           float64 // running mean training loss of the epoch
	Metric         float64 // latest validation metric; NaN before the first
	ElapsedSeconds float64 // since the stage started
	ETASeconds     float64 // estimated time left in the stage
	// A warning about the stage (e.g. its budget affords too few steps to
	// learn), on the first event after it arose; "" otherwise.
	Warning string
}

// CallbackPanic is the value Search and Retrain panic with when their
// progress callback panicked: the call was cancelled, C returned and freed
// what it made, and then the panic continues in the calling goroutine.
type CallbackPanic struct {
	Value interface{} // what the callback panicked with
	Stack []byte      // the callback's stack at the panic
}

func (p *CallbackPanic) Error() string {
	return fmt.Sprintf("dashnas: the progress callback panicked: %v\n\ncallback stack:\n%s", p.Value, p.Stack)
}

// Unwrap gives the panic value when it was an error.
func (p *CallbackPanic) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

// callback is what a cgo.Handle refers to during one Search or Retrain.
type callback struct {
	fn       func(Progress) bool
	panicked bool
	value    interface{}
	stack    []byte
}

// start makes the handle C passes back to goDashProgress; 0 (no callback)
// when fn is nil. Call the returned stop after the C call.
func startCallback(fn func(Progress) bool) (C.uintptr_t, *callback, func()) {
	if fn == nil {
		return 0, nil, func() {}
	}
	cb := &callback{fn: fn}
	h := cgo.NewHandle(cb)
	return C.uintptr_t(h), cb, h.Delete
}

func (cb *callback) hasPanicked() bool { return cb != nil && cb.panicked }

// repanic continues a panic of the callback, once C has returned.
func (cb *callback) repanic() {
	if cb.hasPanicked() {
		panic(&CallbackPanic{Value: cb.value, Stack: cb.stack})
	}
}

//export goDashProgress
func goDashProgress(event *C.dash_progress, handle C.uintptr_t) (cancel C.int) {
	cb := cgo.Handle(handle).Value().(*callback)
	if cb.panicked {
		return 1
	}
	returned := false
	defer func() {
		if returned {
			return
		}
		// The callback panicked (possibly with nil). Never let it unwind
		// through C: cancel, and let the caller re-raise it.
		cb.panicked = true
		cb.value = recover()
		cb.stack = debug.Stack()
		cancel = 1
	}()
	goOn := cb.fn(progressFromC(event))
	returned = true
	if goOn {
		return 0
	}
	return 1
}

// progressFromC reads only the fields the library's struct has: `size` is
// sizeof(dash_progress) of the library that filled it.
func progressFromC(e *C.dash_progress) Progress {
	size := uintptr(e.size)
	has := func(offset, fieldSize uintptr) bool { return size >= offset+fieldSize }
	p := Progress{Metric: math.NaN(), ETASeconds: math.NaN()}
	if has(unsafe.Offsetof(e.stage), unsafe.Sizeof(e.stage)) && e.stage != nil {
		p.Stage = C.GoString(e.stage)
	}
	if has(unsafe.Offsetof(e.epoch), unsafe.Sizeof(e.epoch)) {
		p.Epoch = int64(e.epoch)
	}
	if has(unsafe.Offsetof(e.epochs), unsafe.Sizeof(e.epochs)) {
		p.Epochs = int64(e.epochs)
	}
	if has(unsafe.Offsetof(e.step), unsafe.Sizeof(e.step)) {
		p.Step = int64(e.step)
	}
	if has(unsafe.Offsetof(e.steps), unsafe.Sizeof(e.steps)) {
		p.Steps = int64(e.steps)
	}
	if has(unsafe.Offsetof(e.loss), unsafe.Sizeof(e.loss)) {
		p.Loss = float64(e.loss)
	}
	if has(unsafe.Offsetof(e.metric), unsafe.Sizeof(e.metric)) {
		p.Metric = float64(e.metric)
	}
	if has(unsafe.Offsetof(e.elapsed_s), unsafe.Sizeof(e.elapsed_s)) {
		p.ElapsedSeconds = float64(e.elapsed_s)
	}
	if has(unsafe.Offsetof(e.eta_s), unsafe.Sizeof(e.eta_s)) {
		p.ETASeconds = float64(e.eta_s)
	}
	if has(unsafe.Offsetof(e.warning), unsafe.Sizeof(e.warning)) && e.warning != nil {
		p.Warning = C.GoString(e.warning)
	}
	return p
}
