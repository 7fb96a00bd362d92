// The JSON Schema of a contract schema, as endpoint metadata ($SRV.INFO) and docs/contract.md
// show it: a request as clients write it ("input": fields with defaults are optional), a
// reply as the service sends it ("output").
import { z } from "zod";

export type JsonSchema = Record<string, unknown>;

export function jsonSchema(schema: z.ZodType, io: "input" | "output"): JsonSchema {
  return z.toJSONSchema(schema, { io, unrepresentable: "any" }) as JsonSchema;
}
