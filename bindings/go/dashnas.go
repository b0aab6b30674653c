// Package dashnas is the Go binding of dashnas, the DASH architecture search
// library: it finds kernel sizes and dilations for a convolutional network on
// your data, retrains it, and gives you a model to run.
//
// The binding wraps the C ABI in include/dash/dash.h, found through
// pkg-config (package "dashnas"). The header is the contract; this package
// adds Go ownership, errors and callbacks on top of it:
//
//   - Task, Arch and Model own one library handle each. Close frees it and is
//     safe to call twice; a finalizer frees a forgotten handle, but late (the
//     garbage collector does not see the memory behind it), so call Close.
//   - Every failing call returns an *Error holding the library's status and
//     message. The message is read in the same cgo call as the failing
//     function (see shim.h), so it is always the message of that call even
//     though Go moves goroutines between OS threads.
//   - Handles are safe to share between goroutines, with the library's rules
//     (dash.h, "Threads"): an Arch is immutable and a Model locks itself, so
//     their methods all run at once; a Task's reading methods (Search,
//     Retrain, Model.Evaluate, ...) run at once, and SetData, SetDataValues
//     and LoadFiles wait for them and run alone. Task.Interrupt stops the
//     searches, retrains and evaluations running on a task from any
//     goroutine. Close waits for the calls running on its handle.
//   - Progress callbacks cross into C as a runtime/cgo.Handle, never as a Go
//     pointer kept by C. A callback that panics cancels the call; the panic is
//     raised again, as a *CallbackPanic, in the calling goroutine once the C
//     call has returned and freed what it made.
package dashnas

// #cgo pkg-config: dashnas
// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"fmt"
	"sync"
	"unsafe"
)

// HeaderVersion is DASH_VERSION_STRING of the header this package was built with.
const HeaderVersion = C.DASH_VERSION_STRING

// HeaderABIVersion is DASH_ABI_VERSION of the header this package was built with.
const HeaderABIVersion = int(C.DASH_ABI_VERSION)

// Status mirrors dash_status. It implements error so that
// errors.Is(err, dashnas.Cancelled) tests the status of an *Error.
type Status int

// The statuses of dash_status.
const (
	OK              Status = C.DASH_OK
	InvalidArgument Status = C.DASH_INVALID_ARGUMENT // a nil, a wrong length or shape, a bad option
	IOError         Status = C.DASH_IO_ERROR         // a file is missing, unreadable or unwritable
	BadFile         Status = C.DASH_BAD_FILE         // a file was read but is truncated, corrupted or not ours
	Cancelled       Status = C.DASH_CANCELLED        // the progress callback or Task.Interrupt stopped it
	Unsupported     Status = C.DASH_UNSUPPORTED      // valid, but not available in this build (e.g. CUDA)
	OutOfMemory     Status = C.DASH_OUT_OF_MEMORY    // an allocation failed; the library keeps working
	Internal        Status = C.DASH_INTERNAL         // a bug in dashnas: please report the message
)

// String is the status's C name, as dash_status_name gives it ("DASH_IO_ERROR").
func (s Status) String() string {
	return C.GoString(C.dash_status_name(C.dash_status(s)))
}

// Error makes a Status usable as an errors.Is target.
func (s Status) Error() string { return s.String() }

// Error is what a failing call returns: the library's status and message, or
// one this binding made for a mistake it catches before calling C (a closed
// handle, a slice of the wrong length).
type Error struct {
	Status  Status
	Message string // names the C function or Go method, the problem and what to do
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "dashnas: " + e.Status.String()
	}
	return fmt.Sprintf("dashnas: %s (%s)", e.Message, e.Status)
}

// Is reports whether target is this error's Status, so that
// errors.Is(err, dashnas.InvalidArgument) works.
func (e *Error) Is(target error) bool {
	s, ok := target.(Status)
	return ok && s == e.Status
}

func errorf(status Status, format string, args ...interface{}) error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// check turns a shim's status and copied message into an error, freeing the copy.
func check(status C.dash_status, message *C.char) error {
	if message != nil {
		defer C.free(unsafe.Pointer(message))
	}
	if status == C.DASH_OK {
		return nil
	}
	e := &Error{Status: Status(status)}
	if message != nil {
		e.Message = C.GoString(message)
	}
	return e
}

// takeString copies a string the library returned and frees it.
func takeString(s *C.char) string {
	defer C.dash_string_free(s)
	return C.GoString(s)
}

// Version is the loaded library's version, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.dash_version()) }

// ABIVersion is DASH_ABI_VERSION of the loaded library.
func ABIVersion() int { return int(C.dash_abi_version()) }

var (
	abiOnce sync.Once
	abiErr  error
)

// checkABI compares the loaded library's ABI version with the header's, once.
// Every function that makes a handle from nothing calls it, so a mismatched
// library is refused before any handle exists.
func checkABI() error {
	abiOnce.Do(func() {
		if got := ABIVersion(); got != HeaderABIVersion {
			abiErr = errorf(Unsupported,
				"the loaded libdashnas (version %s) has ABI version %d, but this binding was built "+
					"against ABI version %d (header %s): rebuild it against the installed library",
				Version(), got, HeaderABIVersion, HeaderVersion)
		}
	})
	return abiErr
}

// OptionsDescribe lists every option of Search and Retrain as JSON:
// {"name": {"type", "default", "used_by": ["search", "retrain"], "help"}, ...}.
func OptionsDescribe() (string, error) {
	if err := checkABI(); err != nil {
		return "", err
	}
	var out, msg *C.char
	if err := check(C.dashgo_options_describe(&out, &msg), msg); err != nil {
		return "", err
	}
	return takeString(out), nil
}

// ReportHTML renders a run's record (what Model.Info returns, or the
// runner's --out file) as one self-contained HTML page: inline SVG, nothing
// fetched. Anything else is an error with status InvalidArgument.
func ReportHTML(runJSON string) (string, error) {
	if err := checkABI(); err != nil {
		return "", err
	}
	run := C.CString(runJSON)
	defer C.free(unsafe.Pointer(run))
	var out, msg *C.char
	if err := check(C.dashgo_report_html(run, &out, &msg), msg); err != nil {
		return "", err
	}
	return takeString(out), nil
}

// Split names one of a task's data splits.
type Split int

// The splits of dash_split.
const (
	SplitTrain Split = C.DASH_SPLIT_TRAIN
	SplitValid Split = C.DASH_SPLIT_VALID // optional: carved from train ("valid_fraction") if unset
	SplitTest  Split = C.DASH_SPLIT_TEST
)

func (s Split) String() string {
	switch s {
	case SplitTrain:
		return "train"
	case SplitValid:
		return "valid"
	case SplitTest:
		return "test"
	}
	return fmt.Sprintf("Split(%d)", int(s))
}

// cString converts s for a C call; free the result with C.free.
func cString(s string) *C.char { return C.CString(s) }

func freeCString(s *C.char) { C.free(unsafe.Pointer(s)) }

// Placeholders for empty slices: the library gets a valid pointer with n = 0
// and reports the empty input itself, rather than a NULL it would report instead.
var (
	emptyFloats [1]float32
	emptyLongs  [1]int64
)

// floatPtr points C at a slice's first element (float32 arrays hold no Go
// pointers, so cgo allows passing them for the duration of a call).
func floatPtr(s []float32) *C.float {
	if len(s) == 0 {
		return (*C.float)(unsafe.Pointer(&emptyFloats[0]))
	}
	return (*C.float)(unsafe.Pointer(&s[0]))
}

func longPtr(s []int64) unsafe.Pointer {
	if len(s) == 0 {
		return unsafe.Pointer(&emptyLongs[0])
	}
	return unsafe.Pointer(&s[0])
}
