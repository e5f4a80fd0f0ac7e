export { type BuildSegmentsOptions, buildSegment, buildSegments, segmentId } from './build.ts';
export { InvalidVectorError, SegmentIntegrityError } from './errors.ts';
export { OpenSegment, openSegment } from './load.ts';
export { CHUNKS_VERSION, ChunkTable, encodeChunks } from './meta.ts';
export * from './types.ts';
export { exactSearch, NORM_TOLERANCE } from './vectors.ts';
