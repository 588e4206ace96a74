// Prints the README's settings table, generated from the schema and config/default.json:
//   node --import tsx src/config/render-docs.ts
import { describeSettings } from "./load.js";

process.stdout.write(`${describeSettings()}\n`);
