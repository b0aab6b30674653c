// Command fashionmnist runs dashnas end to end on Fashion-MNIST: search,
// retrain, save, load and infer, printing the architecture found and the
// test accuracy. The same program as the C and Rust samples.
package main

import (
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"dashnas.dev/dashnas"
)

const spec = `{"kind":"classification","input_shape":[1,28,28],"num_classes":10}`

func main() {
	budget := flag.Float64("budget", 60, "seconds for search and retrain together: 40% search, 60% retrain")
	maxTrain := flag.Int("max-train", 2000, "train on the first N training images (0: all 60000)")
	threads := flag.Int("threads", 0, "compute threads (0: the library's default)")
	data := flag.String("data", "/usr/share/datasets/fashion-mnist", "folder of the four Fashion-MNIST .gz files")
	modelPath := flag.String("model", "", "where to save the model (default: a temporary folder, removed at the end)")
	flag.Parse()
	if err := run(*budget, *maxTrain, *threads, *data, *modelPath); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(budget float64, maxTrain, threads int, data, modelPath string) error {
	fmt.Printf("dashnas %s (Go binding, header %s)\n", dashnas.Version(), dashnas.HeaderVersion)
	file := func(name string) string { return filepath.Join(data, name) }

	task, err := dashnas.NewTask(spec)
	if err != nil {
		return err
	}
	defer task.Close()
	if err := task.LoadFiles(dashnas.SplitTrain, file("train-images-idx3-ubyte.gz"), file("train-labels-idx1-ubyte.gz")); err != nil {
		return err
	}
	if err := task.LoadFiles(dashnas.SplitTest, file("t10k-images-idx3-ubyte.gz"), file("t10k-labels-idx1-ubyte.gz")); err != nil {
		return err
	}
	nTrain, _ := task.SplitSize(dashnas.SplitTrain)
	nTest, _ := task.SplitSize(dashnas.SplitTest)
	fmt.Printf("data: %d train images (using %d), %d test images\n", nTrain, maxTrain, nTest)

	options := func(share float64) string {
		o := map[string]interface{}{"time_budget_s": budget * share, "max_train": maxTrain, "seed": 0}
		if threads > 0 {
			o["threads"] = threads
		}
		text, _ := json.Marshal(o)
		return string(text)
	}

	fmt.Printf("search, %.0f s budget\n", budget*0.4)
	progress := &epochPrinter{}
	arch, err := task.Search(options(0.4), progress.event)
	progress.flush()
	if err != nil {
		return err
	}
	defer arch.Close()
	archJSON, err := arch.JSON()
	if err != nil {
		return err
	}
	fmt.Println("architecture found:")
	fmt.Println("  " + archJSON)
	fmt.Println("  layers (kernel/dilation):", layerSummary(archJSON))

	fmt.Printf("retrain, %.0f s budget\n", budget*0.6)
	model, err := task.Retrain(arch, options(0.6), progress.event)
	progress.flush()
	if err != nil {
		return err
	}
	defer model.Close()

	report, err := model.Evaluate(task, dashnas.SplitTest)
	if err != nil {
		return err
	}
	var ev struct {
		Samples    int     `json:"samples"`
		MetricName string  `json:"metric_name"`
		Metric     float64 `json:"metric"`
	}
	if err := json.Unmarshal([]byte(report), &ev); err != nil {
		return fmt.Errorf("reading the evaluation %s: %v", report, err)
	}
	fmt.Printf("test %s: %.4f on %d images\n", ev.MetricName, ev.Metric, ev.Samples)

	kept := modelPath != ""
	if modelPath == "" {
		dir, err := os.MkdirTemp("", "dashnas-sample-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		modelPath = filepath.Join(dir, "fashion-mnist.dash")
	}
	if err := model.Save(modelPath); err != nil {
		return err
	}
	loaded, err := dashnas.LoadModel(modelPath)
	if err != nil {
		return err
	}
	defer loaded.Close()
	fmt.Printf("saved and loaded %s\n", modelPath)
	info, err := model.Info()
	if err != nil {
		return err
	}
	page, err := dashnas.ReportHTML(info)
	if err != nil {
		return err
	}
	reportPath := strings.TrimSuffix(modelPath, filepath.Ext(modelPath)) + ".html"
	if err := os.WriteFile(reportPath, []byte(page), 0o644); err != nil {
		return err
	}
	if kept {
		fmt.Printf("report: %s\n", reportPath)
	} else {
		fmt.Printf("report: %s (removed at exit with its temporary folder; -model PATH keeps both)\n", reportPath)
	}

	const n = 100
	images, err := readIdx(file("t10k-images-idx3-ubyte.gz"), 0x00000803, n)
	if err != nil {
		return err
	}
	labels, err := readIdx(file("t10k-labels-idx1-ubyte.gz"), 0x00000801, n)
	if err != nil {
		return err
	}
	x := make([]float32, len(images))
	for i, b := range images {
		x[i] = float32(b) // raw 0..255: the model normalises its input itself
	}
	want, err := model.Infer(x, n)
	if err != nil {
		return err
	}
	got, err := loaded.Infer(x, n)
	if err != nil {
		return err
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			return fmt.Errorf("the loaded model's output %d is %v, the in-memory model's %v", i, got[i], want[i])
		}
	}
	classes := len(want) / n
	correct := 0
	for i := 0; i < n; i++ {
		if argmax(want[i*classes:(i+1)*classes]) == int(labels[i]) {
			correct++
		}
	}
	fmt.Printf("loaded model = in-memory model on the first %d test images; accuracy %.2f\n",
		n, float64(correct)/n)
	return nil
}

// epochPrinter prints one line per epoch: the last event of each epoch, which
// the library sends at the epoch's end with that epoch's validation metric.
// The grid search ("hpo") trains several configurations, each from epoch 1:
// a step count going back also starts a new line.
type epochPrinter struct {
	last    dashnas.Progress
	pending bool
}

func (p *epochPrinter) event(e dashnas.Progress) bool {
	if e.Warning != "" {
		fmt.Println("  warning:", e.Warning)
	}
	if e.Step == 0 {
		return true
	}
	if p.pending && (e.Stage != p.last.Stage || e.Epoch != p.last.Epoch || e.Step < p.last.Step) {
		p.flush()
	}
	p.last, p.pending = e, true
	return true
}

func (p *epochPrinter) flush() {
	if !p.pending {
		return
	}
	e := p.last
	fmt.Printf("  %-7s epoch %2d/%-2d  loss %.4f  valid %.4f  %5.1f s\n",
		e.Stage, e.Epoch, e.Epochs, e.Loss, e.Metric, e.ElapsedSeconds)
	p.pending = false
}

func argmax(v []float32) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

// layerSummary lists an architecture's layers as "k/d" pairs.
func layerSummary(archJSON string) string {
	var arch struct {
		Layers []struct {
			KernelSize int `json:"kernel_size"`
			Dilation   int `json:"dilation"`
		} `json:"layers"`
	}
	if err := json.Unmarshal([]byte(archJSON), &arch); err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	parts := make([]string, len(arch.Layers))
	for i, l := range arch.Layers {
		parts[i] = fmt.Sprintf("%d/%d", l.KernelSize, l.Dilation)
	}
	return strings.Join(parts, " ")
}

// readIdx reads the first n items of a gzipped idx file (big-endian magic,
// then one uint32 per dimension, then uint8 data) and checks the magic.
func readIdx(path string, magic uint32, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	defer z.Close()
	var got uint32
	if err := binary.Read(z, binary.BigEndian, &got); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if got != magic {
		return nil, fmt.Errorf("%s: magic 0x%08x, want 0x%08x", path, got, magic)
	}
	dims := make([]uint32, magic&0xff)
	if err := binary.Read(z, binary.BigEndian, dims); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if int(dims[0]) < n {
		return nil, fmt.Errorf("%s: %d items, want at least %d", path, dims[0], n)
	}
	size := n
	for _, d := range dims[1:] {
		size *= int(d)
	}
	out := make([]byte, size)
	if _, err := io.ReadFull(z, out); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return out, nil
}
