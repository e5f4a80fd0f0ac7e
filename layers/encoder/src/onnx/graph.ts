import { DataType, type OnnxTypes, onnx } from './proto.ts';

// A small builder over the generated protobuf classes. There is no maintained npm library that
// builds ONNX graphs (onnx's own helpers are Python), so this keeps graph code readable: named
// values in, named values out, attributes typed.

/** An attribute value: `{ i }` integer, `{ f }` float, `{ ints }`, `{ floats }`, or `{ s }` string. */
export type AttributeValue =
  | { readonly i: number }
  | { readonly f: number }
  | { readonly ints: readonly number[] }
  | { readonly floats: readonly number[] }
  | { readonly s: string };

/** A graph input or output: name, element type, and dimensions (numbers or symbolic names). */
export interface ValueSpec {
  readonly name: string;
  readonly type: number;
  readonly dims: readonly (number | string)[];
}

/** The com.microsoft contrib-op domain of ONNX Runtime. */
export const MS_DOMAIN = 'com.microsoft';

/** Accumulates nodes and initializers, then serializes a `ModelProto`. */
export class GraphBuilder {
  private readonly nodes: OnnxTypes.INodeProto[] = [];
  private readonly initializers: OnnxTypes.ITensorProto[] = [];
  private readonly names = new Set<string>();
  private counter = 0;

  /** A fresh value name starting with `prefix`. */
  unique(prefix: string): string {
    let name = `${prefix}_${this.counter++}`;
    while (this.names.has(name)) name = `${prefix}_${this.counter++}`;
    this.names.add(name);
    return name;
  }

  /** Adds an initializer from raw little-endian bytes and returns its name. */
  initializer(name: string, dataType: number, dims: readonly number[], bytes: Uint8Array): string {
    if (this.names.has(name)) throw new Error(`duplicate value name ${name}`);
    this.names.add(name);
    this.initializers.push({ name, dataType, dims: [...dims], rawData: bytes });
    return name;
  }

  /** Adds a float32 initializer. */
  float32(name: string, dims: readonly number[], data: Float32Array): string {
    return this.initializer(name, DataType.FLOAT, dims, bytesOf(data));
  }

  /** Adds an int64 initializer (small tensors: shapes, axes, indices). */
  int64(name: string, dims: readonly number[], values: readonly number[]): string {
    return this.initializer(
      name,
      DataType.INT64,
      dims,
      bytesOf(BigInt64Array.from(values, (v) => BigInt(v))),
    );
  }

  /**
   * Adds a node and returns its output names.
   * @param outputs number of outputs to name automatically (default 1), or explicit names
   * @param domain operator domain; default the ONNX domain
   */
  node(
    opType: string,
    inputs: readonly string[],
    attributes: Readonly<Record<string, AttributeValue>> = {},
    outputs: number | readonly string[] = 1,
    domain = '',
  ): string[] {
    const outNames =
      typeof outputs === 'number'
        ? Array.from({ length: outputs }, () => this.unique(opType.toLowerCase()))
        : outputs.map((o) => {
            this.names.add(o);
            return o;
          });
    this.nodes.push({
      opType,
      domain,
      name: this.unique(`${opType}_node`),
      input: [...inputs],
      output: outNames,
      attribute: Object.entries(attributes).map(([name, v]) => toAttribute(name, v)),
    });
    return outNames;
  }

  /** Shorthand for a node with one output. */
  op(
    opType: string,
    inputs: readonly string[],
    attributes: Readonly<Record<string, AttributeValue>> = {},
  ): string {
    return this.node(opType, inputs, attributes, 1)[0]!;
  }

  /** Shorthand for a com.microsoft contrib node with one output. */
  msOp(
    opType: string,
    inputs: readonly string[],
    attributes: Readonly<Record<string, AttributeValue>> = {},
  ): string {
    return this.node(opType, inputs, attributes, 1, MS_DOMAIN)[0]!;
  }

  /** Serializes the graph as an ONNX model (IR version 8, opset 17, com.microsoft 1). */
  toModelBytes(options: {
    readonly graphName: string;
    readonly inputs: readonly ValueSpec[];
    readonly outputs: readonly ValueSpec[];
    readonly metadata?: Readonly<Record<string, string>>;
  }): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'cohort-search',
      producerVersion: '0.1.0',
      opsetImport: [
        { domain: '', version: 17 },
        { domain: MS_DOMAIN, version: 1 },
      ],
      metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: options.graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: options.inputs.map(valueInfo),
        output: options.outputs.map(valueInfo),
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

/** The bytes of a typed array, as a view (no copy). */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function toAttribute(name: string, v: AttributeValue): OnnxTypes.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if ('i' in v) return { name, type: T.INT, i: v.i };
  if ('f' in v) return { name, type: T.FLOAT, f: v.f };
  if ('ints' in v) return { name, type: T.INTS, ints: [...v.ints] };
  if ('floats' in v) return { name, type: T.FLOATS, floats: [...v.floats] };
  return { name, type: T.STRING, s: new TextEncoder().encode(v.s) };
}

function valueInfo(spec: ValueSpec): OnnxTypes.IValueInfoProto {
  return {
    name: spec.name,
    type: {
      tensorType: {
        elemType: spec.type,
        shape: { dim: spec.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}
