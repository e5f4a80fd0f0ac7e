export * from './batching.ts';
export * from './bundle.ts';
export * from './checkpoint/index.ts';
export * from './config.ts';
export * from './encoder.ts';
export * from './errors.ts';
export * from './fixture.ts';
export * from './hub.ts';
export * from './logger.ts';
export {
  type BuildBertOnnxOptions,
  buildBertOnnx,
  type GraphKind,
  ONNX_IO,
  type Pooling,
  quantizePerColumn,
} from './onnx/bert.ts';
export * from './reference.ts';
export * from './resolve.ts';
export * from './session.ts';
export * from './tensor.ts';
export * from './tokenizer.ts';
export * from './weights.ts';
export * from './worker-encoder.ts';
