// Converts between the SDK's send input and the structured CloudEvents JSON that goes over the
// wire. The dead-letter store keeps the wire form (what a person would expect to read), and
// replay turns it back into SDK input.
import type { SendCloudEventInput } from "@azure/eventgrid";

const NAMED = ["id", "type", "source", "subject", "datacontenttype", "dataschema", "data"] as const;
const NOT_EXTENSIONS = new Set<string>([...NAMED, "specversion", "time", "data_base64"]);

export function toWire(input: SendCloudEventInput<unknown>): Record<string, unknown> {
  const wire: Record<string, unknown> = { specversion: "1.0", id: input.id, type: input.type, source: input.source };
  if (input.time !== undefined) wire.time = input.time instanceof Date ? input.time.toISOString() : input.time;
  if (input.subject !== undefined) wire.subject = input.subject;
  if (input.datacontenttype !== undefined) wire.datacontenttype = input.datacontenttype;
  if (input.dataschema !== undefined) wire.dataschema = input.dataschema;
  Object.assign(wire, input.extensionAttributes);
  wire.data = input.data;
  return wire;
}

export function fromWire(wire: Record<string, unknown>): SendCloudEventInput<unknown> {
  const extensionAttributes: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(wire)) if (!NOT_EXTENSIONS.has(key)) extensionAttributes[key] = value;
  const input: SendCloudEventInput<unknown> = { type: String(wire.type), source: String(wire.source), extensionAttributes };
  for (const key of NAMED) if (wire[key] !== undefined) (input as unknown as Record<string, unknown>)[key] = wire[key];
  if (typeof wire.time === "string") input.time = new Date(wire.time);
  return input;
}
