package dashnas_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"dashnas.dev/dashnas"
)

const (
	spec1D        = `{"kind":"classification","input_shape":[1,32],"num_classes":2}`
	length        = 32
	searchOptions = `{"epochs":1,"hpo":false,"seed":0,"threads":1,"batch_size":16}`
	retrainOpts   = `{"epochs":1,"threads":1}`
)

// synthetic makes n rows of a 1D two-class task: class 0 is a slow sine,
// class 1 a fast one, both with a random phase and a little noise.
func synthetic(n int, seed int64) ([]float32, []int64) {
	r := rand.New(rand.NewSource(seed))
	x := make([]float32, n*length)
	y := make([]int64, n)
	for i := 0; i < n; i++ {
		y[i] = int64(i % 2)
		freq := 2.0
		if y[i] == 1 {
			freq = 8.0
		}
		phase := r.Float64() * 2 * math.Pi
		for t := 0; t < length; t++ {
			x[i*length+t] = float32(math.Sin(2*math.Pi*freq*float64(t)/length+phase) + 0.1*r.NormFloat64())
		}
	}
	return x, y
}

func newTask(t *testing.T) *dashnas.Task {
	t.Helper()
	task, err := dashnas.NewTask(spec1D)
	if err != nil {
		t.Fatalf("NewTask: %v", err)
	}
	x, y := synthetic(64, 1)
	if err := task.SetData(dashnas.SplitTrain, x, y); err != nil {
		t.Fatalf("SetData(train): %v", err)
	}
	xt, yt := synthetic(16, 2)
	if err := task.SetData(dashnas.SplitTest, xt, yt); err != nil {
		t.Fatalf("SetData(test): %v", err)
	}
	return task
}

// asError asserts that err is an *dashnas.Error with the given status.
func asError(t *testing.T, err error, status dashnas.Status) *dashnas.Error {
	t.Helper()
	var e *dashnas.Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v (%T), want a *dashnas.Error with status %v", err, err, status)
	}
	if e.Status != status {
		t.Fatalf("got status %v, want %v (message %q)", e.Status, status, e.Message)
	}
	if !errors.Is(err, status) {
		t.Fatalf("errors.Is(err, %v) is false", status)
	}
	return e
}

// One search + retrain shared by the tests that need a model.
var fixture struct {
	once     sync.Once
	task     *dashnas.Task
	arch     *dashnas.Arch
	model    *dashnas.Model
	events   []dashnas.Progress
	err      error
	archJSON string
}

func trained(t *testing.T) (*dashnas.Task, *dashnas.Arch, *dashnas.Model) {
	t.Helper()
	fixture.once.Do(func() {
		task, err := dashnas.NewTask(spec1D)
		if err != nil {
			fixture.err = err
			return
		}
		x, y := synthetic(64, 1)
		xt, yt := synthetic(16, 2)
		if err = task.SetData(dashnas.SplitTrain, x, y); err == nil {
			err = task.SetData(dashnas.SplitTest, xt, yt)
		}
		if err != nil {
			fixture.err = err
			return
		}
		record := func(p dashnas.Progress) bool {
			fixture.events = append(fixture.events, p)
			return true
		}
		arch, err := task.Search(searchOptions, record)
		if err != nil {
			fixture.err = fmt.Errorf("Search: %w", err)
			return
		}
		model, err := task.Retrain(arch, retrainOpts, record)
		if err != nil {
			fixture.err = fmt.Errorf("Retrain: %w", err)
			return
		}
		fixture.task, fixture.arch, fixture.model = task, arch, model
	})
	if fixture.err != nil {
		t.Fatalf("search and retrain of the synthetic task: %v", fixture.err)
	}
	return fixture.task, fixture.arch, fixture.model
}

func TestVersionMatchesHeader(t *testing.T) {
	if got := dashnas.Version(); got != dashnas.HeaderVersion {
		t.Errorf("Version() = %q, want DASH_VERSION_STRING %q", got, dashnas.HeaderVersion)
	}
	if got := dashnas.ABIVersion(); got != dashnas.HeaderABIVersion {
		t.Errorf("ABIVersion() = %d, want DASH_ABI_VERSION %d", got, dashnas.HeaderABIVersion)
	}
}

func TestStatusNamesMatchLibrary(t *testing.T) {
	want := map[dashnas.Status]string{
		dashnas.OK: "DASH_OK", dashnas.InvalidArgument: "DASH_INVALID_ARGUMENT",
		dashnas.IOError: "DASH_IO_ERROR", dashnas.BadFile: "DASH_BAD_FILE",
		dashnas.Cancelled: "DASH_CANCELLED", dashnas.Unsupported: "DASH_UNSUPPORTED",
		dashnas.OutOfMemory: "DASH_OUT_OF_MEMORY", dashnas.Internal: "DASH_INTERNAL",
	}
	for status, name := range want {
		if got := status.String(); got != name {
			t.Errorf("Status(%d).String() = %q, want %q", int(status), got, name)
		}
	}
}

func TestInvalidSpecIsInvalidArgumentNamingTheProblem(t *testing.T) {
	cases := []struct{ spec, mentions string }{
		{`{"kind":"classification","input_shape":[1,32]}`, "num_classes"},
		{`{"kind":"clasification","input_shape":[1,32],"num_classes":2}`, "clasification"},
		{`{"kind":"classification","input_shape":[1,32],"num_classes":2,"colour":1}`, "colour"},
		{`{"kind":`, "JSON"},
	}
	for _, c := range cases {
		task, err := dashnas.NewTask(c.spec)
		if err == nil {
			task.Close()
			t.Errorf("NewTask(%s) succeeded", c.spec)
			continue
		}
		e := asError(t, err, dashnas.InvalidArgument)
		if !strings.Contains(e.Message, c.mentions) {
			t.Errorf("NewTask(%s): message %q does not mention %q", c.spec, e.Message, c.mentions)
		}
	}
}

// The message is thread-local in C; goroutines failing at once must each get
// their own (the shim reads it in the same cgo call).
func TestErrorMessagesStayWithTheirCall(t *testing.T) {
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				n := 1000 + g*100 + i
				spec := fmt.Sprintf(`{"kind":"classification","input_shape":[1,%d],"num_classes":-%d}`, n, n)
				task, err := dashnas.NewTask(spec)
				if err == nil {
					task.Close()
				}
				var e *dashnas.Error
				if !errors.As(err, &e) || !strings.Contains(e.Message, fmt.Sprint(n)) {
					t.Errorf("goroutine %d: NewTask(%s) gave %v, want a message about %d", g, spec, err, n)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestOptionsDescribe(t *testing.T) {
	text, err := dashnas.OptionsDescribe()
	if err != nil {
		t.Fatal(err)
	}
	var opts map[string]struct {
		Type   string   `json:"type"`
		UsedBy []string `json:"used_by"`
		Help   string   `json:"help"`
	}
	if err := json.Unmarshal([]byte(text), &opts); err != nil {
		t.Fatalf("OptionsDescribe is not the documented JSON: %v\n%s", err, text)
	}
	for _, name := range []string{"epochs", "time_budget_s", "threads", "max_train", "hpo"} {
		o, ok := opts[name]
		if !ok {
			t.Errorf("option %q is not described", name)
			continue
		}
		if o.Help == "" || len(o.UsedBy) == 0 {
			t.Errorf("option %q has no help or used_by: %+v", name, o)
		}
	}
}

func TestWrongLengthsAndBadDataAreInvalidArgument(t *testing.T) {
	task, err := dashnas.NewTask(spec1D)
	if err != nil {
		t.Fatal(err)
	}
	defer task.Close()
	x, y := synthetic(4, 3)

	// x one float short of 4 samples: caught in Go (C cannot see slice lengths).
	e := asError(t, task.SetData(dashnas.SplitTrain, x[:len(x)-1], y), dashnas.InvalidArgument)
	if !strings.Contains(e.Message, "127") || !strings.Contains(e.Message, "128") {
		t.Errorf("wrong-length message %q does not give the lengths", e.Message)
	}
	// A label out of range: caught by the library.
	bad := []int64{0, 1, 2, 0}
	e = asError(t, task.SetData(dashnas.SplitTrain, x, bad), dashnas.InvalidArgument)
	if !strings.Contains(e.Message, "2") {
		t.Errorf("out-of-range label message %q does not name the label", e.Message)
	}
	// No samples: the library rejects n < 1.
	asError(t, task.SetData(dashnas.SplitTrain, nil, nil), dashnas.InvalidArgument)
	// NaN: the library rejects it.
	xn := append([]float32(nil), x...)
	xn[5] = float32(math.NaN())
	asError(t, task.SetData(dashnas.SplitTrain, xn, y), dashnas.InvalidArgument)
	// Float targets on a classification task.
	asError(t, task.SetDataValues(dashnas.SplitTrain, x, make([]float32, 4)), dashnas.InvalidArgument)
	// Nothing was stored by the failing calls.
	if n, err := task.SplitSize(dashnas.SplitTrain); err != nil || n != 0 {
		t.Errorf("SplitSize(train) after failed SetData = %d, %v; want 0, nil", n, err)
	}
	// Search without train data, and with an unknown option.
	e = asError(t, searchErr(task, `{"epochs":1}`), dashnas.InvalidArgument)
	if !strings.Contains(e.Message, "train") {
		t.Errorf("empty-train message %q does not mention train", e.Message)
	}
	if err := task.SetData(dashnas.SplitTrain, x, y); err != nil {
		t.Fatal(err)
	}
	e = asError(t, searchErr(task, `{"epoch":1}`), dashnas.InvalidArgument)
	if !strings.Contains(e.Message, "epoch") {
		t.Errorf("unknown-option message %q does not name the key", e.Message)
	}
	e = asError(t, searchErr(task, `{"epochs":"one"}`), dashnas.InvalidArgument)
	if !strings.Contains(e.Message, "epochs") {
		t.Errorf("wrong-type message %q does not name the key", e.Message)
	}
	// A split that does not exist.
	asError(t, task.SetData(dashnas.Split(7), x, y), dashnas.InvalidArgument)
}

func searchErr(task *dashnas.Task, options string) error {
	arch, err := task.Search(options, nil)
	if err == nil {
		arch.Close()
		return errors.New("Search succeeded")
	}
	return err
}

func TestSearchRetrainInferSaveLoad(t *testing.T) {
	task, arch, model := trained(t)

	// Progress: search events then retrain events, 1-based, with sane totals.
	stages := map[string]int{}
	for _, p := range fixture.events {
		stages[p.Stage]++
		if p.Epoch < 1 || p.Epoch > p.Epochs || (p.Step < 1 && p.Warning == "") || p.Step > p.Steps {
			t.Errorf("progress event out of range: %+v", p)
		}
		if (math.IsNaN(p.Loss) && p.Step > 0) || p.ElapsedSeconds < 0 {
			t.Errorf("progress event with a bad loss or time: %+v", p)
		}
	}
	if stages["search"] == 0 || stages["retrain"] == 0 {
		t.Errorf("progress stages %v, want search and retrain events", stages)
	}

	// The architecture: JSON with one layer per searchable layer, and a round trip.
	text, err := arch.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Backbone json.RawMessage `json:"backbone"`
		Layers   []struct {
			KernelSize int `json:"kernel_size"`
			Dilation   int `json:"dilation"`
		} `json:"layers"`
		Hyperparameters map[string]float64 `json:"hyperparameters"`
	}
	if err := json.Unmarshal([]byte(text), &parsed); err != nil || len(parsed.Layers) == 0 {
		t.Fatalf("Arch.JSON() = %s (%v), want layers", text, err)
	}
	for _, l := range parsed.Layers {
		if l.KernelSize < 1 || l.Dilation < 1 {
			t.Errorf("layer %+v in %s", l, text)
		}
	}
	again, err := dashnas.ArchFromJSON(text)
	if err != nil {
		t.Fatalf("ArchFromJSON(Arch.JSON()): %v", err)
	}
	defer again.Close()
	if text2, _ := again.JSON(); text2 != text {
		t.Errorf("architecture round trip changed it:\n%s\n%s", text, text2)
	}

	// Infer: n * num_classes finite values.
	x, _ := synthetic(10, 5)
	out, err := model.Infer(x, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 10*2 || model.OutputSize() != 2 {
		t.Fatalf("Infer gave %d values (OutputSize %d), want 20", len(out), model.OutputSize())
	}
	for i, v := range out {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("Infer output %d is %v", i, v)
		}
	}
	// Wrong lengths are refused, whichever way.
	asError(t, errOf(model.Infer(x, 11)), dashnas.InvalidArgument)
	asError(t, errOf(model.Infer(x[:len(x)-1], 10)), dashnas.InvalidArgument)

	// Evaluate the test split.
	report, err := model.Evaluate(task, dashnas.SplitTest)
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Split      string  `json:"split"`
		Samples    int     `json:"samples"`
		MetricName string  `json:"metric_name"`
		Metric     float64 `json:"metric"`
	}
	if err := json.Unmarshal([]byte(report), &ev); err != nil || ev.Samples != 16 || ev.MetricName != "accuracy" ||
		ev.Metric < 0 || ev.Metric > 1 {
		t.Errorf("Evaluate(test) = %s (%v), want 16 samples of accuracy in [0, 1]", report, err)
	}
	// EvaluateWith without options is Evaluate; a search option is refused by name.
	for _, options := range []string{"", "{}"} {
		with, err := model.EvaluateWith(task, dashnas.SplitTest, options)
		if err != nil || with != report {
			t.Errorf("EvaluateWith(%q) = %s (%v), want %s", options, with, err, report)
		}
	}
	_, err = model.EvaluateWith(task, dashnas.SplitTest, `{"hpo_share":0.3}`)
	if e := asError(t, err, dashnas.InvalidArgument); !strings.Contains(e.Message, "hpo_share") {
		t.Errorf("EvaluateWith(hpo_share) said %q, want it named", e.Message)
	}

	// Info names the task.
	info, err := model.Info()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, `"input_shape":[1,32]`) {
		t.Errorf("Info() does not give the task's input shape: %s", info)
	}

	// Save, load: identical outputs.
	path := filepath.Join(t.TempDir(), "model.dash")
	if err := model.Save(path); err != nil {
		t.Fatal(err)
	}
	// ONNX export: the file, and a refused option (tests/capi/test_onnx.cpp
	// checks what the file computes against ONNX Runtime).
	onnx := filepath.Join(t.TempDir(), "model.onnx")
	if err := model.ExportONNX(onnx, ""); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(onnx); err != nil || !strings.Contains(string(data), "dashnas_version") {
		t.Errorf("ExportONNX wrote no ONNX file with metadata (%v)", err)
	}
	asError(t, model.ExportONNX(onnx+".bad", `{"opset": 3}`), dashnas.InvalidArgument)
	if _, err := os.Stat(onnx + ".bad"); err == nil {
		t.Errorf("a refused export left a file")
	}

	loaded, err := dashnas.LoadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	asError(t, loaded.SetDevice("gpu"), dashnas.InvalidArgument)
	if err := loaded.SetDevice("cpu"); err != nil {
		t.Fatal(err)
	}
	out2, err := loaded.Infer(x, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := range out {
		if math.Float32bits(out[i]) != math.Float32bits(out2[i]) {
			t.Fatalf("loaded model output %d = %v, in-memory model %v", i, out2[i], out[i])
		}
	}
}

func errOf(_ []float32, err error) error {
	if err == nil {
		return errors.New("call succeeded")
	}
	return err
}

func TestLoadModelErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := dashnas.LoadModel(filepath.Join(dir, "missing.dash"))
	asError(t, err, dashnas.IOError)
	junk := filepath.Join(dir, "junk.dash")
	if err := os.WriteFile(junk, []byte("this is not a model file, just some bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = dashnas.LoadModel(junk)
	asError(t, err, dashnas.BadFile)
}

func TestPlainArch(t *testing.T) {
	task, err := dashnas.NewTask(spec1D)
	if err != nil {
		t.Fatal(err)
	}
	defer task.Close()
	arch, err := dashnas.PlainArch(task)
	if err != nil {
		t.Fatal(err)
	}
	defer arch.Close()
	text, err := arch.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Layers []struct {
			KernelSize int `json:"kernel_size"`
			Dilation   int `json:"dilation"`
		} `json:"layers"`
	}
	if err := json.Unmarshal([]byte(text), &parsed); err != nil || len(parsed.Layers) == 0 {
		t.Fatalf("PlainArch JSON %s (%v)", text, err)
	}
	for _, l := range parsed.Layers {
		if l.KernelSize != 3 || l.Dilation != 1 {
			t.Errorf("plain layer %+v, want k=3 d=1", l)
		}
	}
}

func TestCallbackReturningFalseCancels(t *testing.T) {
	task := newTask(t)
	defer task.Close()
	calls := 0
	stop := func(dashnas.Progress) bool { calls++; return false }

	arch, err := task.Search(searchOptions, stop)
	if err == nil {
		arch.Close()
	}
	asError(t, err, dashnas.Cancelled)
	if calls != 1 {
		t.Errorf("the callback ran %d times after asking to stop, want 1", calls)
	}

	plain, err := dashnas.PlainArch(task)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	calls = 0
	model, err := task.Retrain(plain, retrainOpts, stop)
	if err == nil {
		model.Close()
	}
	asError(t, err, dashnas.Cancelled)
	if calls != 1 {
		t.Errorf("the retrain callback ran %d times after asking to stop, want 1", calls)
	}
}

func TestPanickingCallbackIsCancelledThenRepanics(t *testing.T) {
	task := newTask(t)
	defer task.Close()

	recovered := func(call func()) (value interface{}) {
		defer func() { value = recover() }()
		call()
		return nil
	}
	r := recovered(func() {
		arch, err := task.Search(searchOptions, func(dashnas.Progress) bool { panic("boom in search") })
		t.Errorf("Search returned (%v, %v) instead of panicking", arch, err)
	})
	cp, ok := r.(*dashnas.CallbackPanic)
	if !ok {
		t.Fatalf("recovered %v (%T), want a *dashnas.CallbackPanic", r, r)
	}
	if cp.Value != "boom in search" || !strings.Contains(cp.Error(), "boom in search") || len(cp.Stack) == 0 {
		t.Errorf("CallbackPanic = %v, stack %d bytes", cp.Value, len(cp.Stack))
	}

	errBoom := errors.New("boom in retrain")
	plain, err := dashnas.PlainArch(task)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	r = recovered(func() {
		_, _ = task.Retrain(plain, retrainOpts, func(dashnas.Progress) bool { panic(errBoom) })
	})
	cp, ok = r.(*dashnas.CallbackPanic)
	if !ok || !errors.Is(cp, errBoom) {
		t.Fatalf("recovered %v (%T), want a *dashnas.CallbackPanic wrapping errBoom", r, r)
	}

	// The task and the library still work: the handle was unlocked and the
	// call cancelled cleanly.
	if n, err := task.SplitSize(dashnas.SplitTrain); err != nil || n != 64 {
		t.Errorf("SplitSize after the panic = %d, %v", n, err)
	}
	_, err = task.Search(searchOptions, func(dashnas.Progress) bool { return false })
	asError(t, err, dashnas.Cancelled)
}

func TestConcurrentInferEqualsSerial(t *testing.T) {
	_, _, model := trained(t)
	x, _ := synthetic(32, 9)
	want, err := model.Infer(x, 32)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([][]float32, 8)
	errs := make([]error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 5 && errs[g] == nil; i++ {
				results[g], errs[g] = model.Infer(x, 32)
			}
		}(g)
	}
	wg.Wait()
	for g := range results {
		if errs[g] != nil {
			t.Fatalf("goroutine %d: %v", g, errs[g])
		}
		for i := range want {
			if math.Float32bits(results[g][i]) != math.Float32bits(want[i]) {
				t.Fatalf("goroutine %d: output %d = %v, serial %v", g, i, results[g][i], want[i])
			}
		}
	}
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	task := newTask(t)
	arch, err := dashnas.PlainArch(task)
	if err != nil {
		t.Fatal(err)
	}
	model, err := task.Retrain(arch, retrainOpts, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := model.Close(); err != nil {
			t.Errorf("Model.Close #%d: %v", i+1, err)
		}
		if err := arch.Close(); err != nil {
			t.Errorf("Arch.Close #%d: %v", i+1, err)
		}
		if err := task.Close(); err != nil {
			t.Errorf("Task.Close #%d: %v", i+1, err)
		}
	}
	x, _ := synthetic(1, 1)
	e := asError(t, errOf(model.Infer(x, 1)), dashnas.InvalidArgument)
	if !strings.Contains(e.Message, "closed") {
		t.Errorf("use-after-close message %q", e.Message)
	}
	_, err = arch.JSON()
	asError(t, err, dashnas.InvalidArgument)
	_, err = task.SplitSize(dashnas.SplitTrain)
	asError(t, err, dashnas.InvalidArgument)
	var nilTask *dashnas.Task
	_, err = dashnas.PlainArch(nilTask)
	asError(t, err, dashnas.InvalidArgument)
}

func TestSizesOfEveryKindComeFromTheLibrary(t *testing.T) {
	// Floats per input sample and values per target, worked out by hand.
	cases := []struct {
		spec          string
		input, target int
	}{
		{`{"kind":"classification","input_shape":[3,4,5],"num_classes":7}`, 60, 1},
		{`{"kind":"multilabel","input_shape":[2,8],"num_classes":5}`, 16, 5},
		{`{"kind":"regression","input_shape":[1,8],"num_outputs":3}`, 8, 3},
		{`{"kind":"dense","input_shape":[2,4,6],"num_outputs":3}`, 48, 72},
	}
	for _, c := range cases {
		task, err := dashnas.NewTask(c.spec)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		if task.InputSize() != c.input || task.TargetSize() != c.target {
			t.Errorf("%s: sizes %d, %d, want %d, %d", c.spec, task.InputSize(), task.TargetSize(), c.input, c.target)
		}
		const n = 8
		x := make([]float32, n*c.input)
		for i := range x {
			x[i] = float32(math.Sin(0.37 * float64(i)))
		}
		if c.target == 1 {
			y := make([]int64, n)
			for i := range y {
				y[i] = int64(i % 7)
			}
			err = task.SetData(dashnas.SplitTrain, x, y)
		} else {
			y := make([]float32, n*c.target)
			for i := range y {
				y[i] = float32(i % 2)
			}
			err = task.SetDataValues(dashnas.SplitTrain, x, y)
		}
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		arch, err := dashnas.PlainArch(task)
		if err != nil {
			t.Fatal(err)
		}
		model, err := task.Retrain(arch, `{"epochs":1,"threads":1,"batch_size":4}`, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		wantOut := c.target
		if c.target == 1 {
			wantOut = 7 // logits per class
		}
		if model.InputSize() != c.input || model.OutputSize() != wantOut {
			t.Errorf("%s: model sizes %d, %d, want %d, %d", c.spec, model.InputSize(), model.OutputSize(), c.input, wantOut)
		}
		if _, err := model.Infer(x[:c.input], 1); err != nil {
			t.Errorf("%s: Infer: %v", c.spec, err)
		}
		model.Close()
		arch.Close()
		task.Close()
	}
}

func TestInterruptFromAnotherGoroutineCancelsARetrain(t *testing.T) {
	task := newTask(t)
	defer task.Close()
	arch, err := dashnas.PlainArch(task)
	if err != nil {
		t.Fatal(err)
	}
	defer arch.Close()
	started := make(chan struct{})
	var once sync.Once
	type result struct {
		model *dashnas.Model
		err   error
	}
	done := make(chan result)
	go func() {
		// Thousands of epochs: only the interrupt ends it early.
		m, err := task.Retrain(arch, `{"epochs":5000,"threads":1,"batch_size":16}`, func(dashnas.Progress) bool {
			once.Do(func() { close(started) })
			return true
		})
		done <- result{m, err}
	}()
	<-started
	// Reading the task meanwhile is allowed: it does not wait for the retrain.
	if n, err := task.SplitSize(dashnas.SplitTrain); err != nil || n != 64 {
		t.Errorf("SplitSize during a retrain: %d, %v", n, err)
	}
	if err := task.Interrupt(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.model != nil {
		r.model.Close()
	}
	e := asError(t, r.err, dashnas.Cancelled)
	if !strings.Contains(e.Message, "interrupted by dash_task_interrupt") {
		t.Errorf("message %q", e.Message)
	}
	// A call that starts afterwards is not affected.
	model, err := task.Retrain(arch, retrainOpts, nil)
	if err != nil {
		t.Fatalf("Retrain after Interrupt: %v", err)
	}
	model.Close()
}

func TestInterruptWithoutACallbackAndAfterClose(t *testing.T) {
	task := newTask(t)
	done := make(chan error)
	go func() {
		_, err := task.Search(`{"epochs":5000,"hpo":false,"threads":1,"batch_size":16}`, nil)
		done <- err
	}()
	// Interrupts until Search returns: whenever it began, one comes after.
	var err error
loop:
	for {
		select {
		case err = <-done:
			break loop
		default:
			if e := task.Interrupt(); e != nil {
				t.Fatal(e)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	asError(t, err, dashnas.Cancelled)
	task.Close()
	asError(t, task.Interrupt(), dashnas.InvalidArgument)
	var nilTask *dashnas.Task
	asError(t, nilTask.Interrupt(), dashnas.InvalidArgument)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture.model != nil {
		fixture.model.Close()
		fixture.arch.Close()
		fixture.task.Close()
	}
	os.Exit(code)
}

func TestReportHTML(t *testing.T) {
	html, err := dashnas.ReportHTML(`{"training": {"metric_name": "accuracy", "test_metric": 0.75}}`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html, `<section id="summary">`) || !strings.Contains(html, "0.75") {
		t.Fatalf("the page lacks its summary: %s", html)
	}
	_, err = dashnas.ReportHTML("[1, 2]")
	if e := asError(t, err, dashnas.InvalidArgument); !strings.Contains(e.Message, "dash_model_info") {
		t.Fatalf("message %q does not say what to pass", e.Message)
	}
}

func TestArchInfoRendersBeforeTheRetrain(t *testing.T) {
	_, arch, _ := trained(t)
	info, err := arch.Info()
	if err != nil {
		t.Fatal(err)
	}
	page, err := dashnas.ReportHTML(info)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, `"search"`) || !strings.Contains(page, `<section id="probabilities">`) {
		t.Fatalf("the arch's record lacks its search: %s", info)
	}
}

// Data-parallel through the binding: two ranks as two goroutines of this
// process, meeting on a loopback port, each with its own task holding the
// same data; both return the same architecture and a model whose outputs are
// identical. A library built without Gloo says so (StatusUnsupported): skipped.
func TestTwoRanksSearchAndRetrainToTheSameModel(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("a free port: %v", err)
	}
	port := listener.Addr().(*net.TCPAddr).Port
	listener.Close()
	options := func(rank int, extra string) string {
		return fmt.Sprintf(`{"world_size":2,"rank":%d,"init":"tcp://127.0.0.1:%d","dist_timeout_s":60,`+
			`"threads":1,"seed":0,"batch_size":16,%s}`, rank, port, extra)
	}
	xt, _ := synthetic(16, 2)
	type result struct {
		arch    string
		outputs []float32
		err     error
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for rank := 0; rank < 2; rank++ {
		task := newTask(t)
		defer task.Close()
		wg.Add(1)
		go func(rank int, task *dashnas.Task) {
			defer wg.Done()
			r := &results[rank]
			arch, err := task.Search(options(rank, `"epochs":1,"hpo":false`), nil)
			if err != nil {
				r.err = fmt.Errorf("rank %d: Search: %w", rank, err)
				return
			}
			defer arch.Close()
			model, err := task.Retrain(arch, options(rank, `"epochs":2`), nil)
			if err != nil {
				r.err = fmt.Errorf("rank %d: Retrain: %w", rank, err)
				return
			}
			defer model.Close()
			if r.arch, err = arch.JSON(); err == nil {
				r.outputs, err = model.Infer(xt, 16)
			}
			r.err = err
		}(rank, task)
	}
	wg.Wait()
	if errors.Is(results[0].err, dashnas.Unsupported) {
		t.Skipf("this library has no data-parallel support: %v", results[0].err)
	}
	for _, r := range results {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	if results[0].arch != results[1].arch {
		t.Fatalf("architectures differ between ranks:\n%s\n%s", results[0].arch, results[1].arch)
	}
	if len(results[0].outputs) != 32 {
		t.Fatalf("%d outputs, want 32", len(results[0].outputs))
	}
	for i, v := range results[0].outputs {
		if v != results[1].outputs[i] || math.IsNaN(float64(v)) {
			t.Fatalf("output %d: rank 0 %v, rank 1 %v", i, v, results[1].outputs[i])
		}
	}
}
