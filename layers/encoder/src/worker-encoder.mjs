// The encoder's worker thread (see worker-encoder.ts). Plain JavaScript, so that it starts the same
// way under every runner (node --import tsx, the CLI, vitest): it registers tsx itself, then loads
// the encoder layer from its TypeScript sources and serves embed requests.
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';

// Lower this thread's priority before the session starts, so that ONNX Runtime's threads inherit
// it. On Linux, pid 0 means the calling thread, not the process. The libuv thread pool already
// runs at the server's priority: the caller read the bundle through it before starting this worker.
if (workerData.niceness > 0) {
  try {
    setPriority(0, Math.min(19, getPriority(0) + workerData.niceness));
  } catch {
    // Not permitted here (a seccomp profile, say): run at the caller's priority.
  }
}

const { register } = await import(workerData.tsxApi);
register();
const { Encoder } = await import(workerData.encoderModule);
let encoder;
try {
  encoder = await Encoder.load(workerData.bundleDir, {
    ...workerData.options,
    // The worker has no logger of the caller's; the caller logs the provider it reports.
    logger: { debug() {}, info() {}, warn() {} },
  });
  parentPort.postMessage({
    type: 'ready',
    provider: encoder.provider,
    variant: encoder.variant,
    threads: encoder.threads,
  });
} catch (error) {
  parentPort.postMessage({ type: 'failed', name: error.name, message: error.message });
}

parentPort.on('message', async (message) => {
  if (message.type === 'close') {
    await encoder?.close();
    parentPort.close();
    return;
  }
  try {
    const result = message.texts
      ? await encoder.embed(message.texts, message.options)
      : await encoder.embedIds(message.ids, message.options);
    const flat = new Float32Array(result.embeddings.length * encoder.dims);
    for (let i = 0; i < result.embeddings.length; i++) flat.set(result.embeddings[i], i * encoder.dims);
    parentPort.postMessage({ type: 'result', id: message.id, flat, truncated: result.truncated }, [
      flat.buffer,
    ]);
  } catch (error) {
    parentPort.postMessage({ type: 'error', id: message.id, name: error.name, message: error.message });
  }
});
