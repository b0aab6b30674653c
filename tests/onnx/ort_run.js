// Runs an ONNX model with ONNX Runtime (onnxruntime-node) on float32 input
// read from a file, for the export tests and the latency benchmark:
//
//   node ort_run.js MODEL.onnx INPUT.f32 N,C[,H,W] OUTPUT.f32 [REPEATS]
//
// writes the output "output" as raw float32 to OUTPUT.f32; with REPEATS, also
// runs that many more times and prints {"median_ms": ...} for one run.
// Exits 77 when onnxruntime-node cannot be loaded (the tests then skip).
'use strict';
let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  console.error('onnxruntime-node cannot be loaded (' + e.message.split('\n')[0] +
                '); scripts/test.sh installs it with npm into build/onnxruntime');
  process.exit(77);
}
const fs = require('fs');

async function main() {
  const [model, input, dims, output, repeats] = process.argv.slice(2);
  const session = await ort.InferenceSession.create(model, {intraOpNumThreads: 1, interOpNumThreads: 1});
  const bytes = fs.readFileSync(input);
  const x = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  const feeds = {input: new ort.Tensor('float32', x, dims.split(',').map(Number))};
  const y = (await session.run(feeds)).output.data;
  fs.writeFileSync(output, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
  const n = Number(repeats || 0);
  if (n > 0) {
    const ms = [];
    for (let i = 0; i < n; ++i) {
      const start = process.hrtime.bigint();
      await session.run(feeds);
      ms.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    ms.sort((a, b) => a - b);
    console.log(JSON.stringify({median_ms: ms[Math.floor(n / 2)], repeats: n}));
  }
}

main().catch((e) => {
  console.error('ONNX Runtime: ' + e.message);
  process.exit(1);
});
