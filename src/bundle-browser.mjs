// Build step of the browser wing (`npm run build`): src/browser/*.ts, from rawsse.ts and following
// its relative imports, joined into one ES module, dist/browser/rawsse-client.js, the file that
// GET /rawsse-client.js serves and `rawsse/browser` exports. One file, because a page imports one
// URL. The file is held to 16 KB as served (test/browser-script.test.ts), so what TypeScript
// prints is kept but for its comments (the source keeps them), its indentation and the spaces
// JavaScript does not need (a statement a line, names as written: nothing is renamed, and
// DevTools' pretty-print spaces it out again). `tsc -p src/browser` has type-checked the same sources and written the types
// (dist/browser/modules/).
//
// The modules are joined flat: their imports are dropped and their `export`s (but the entry's)
// removed, so a name declared at the top of two modules would collide. This refuses that, any
// import it does not understand, and a template literal over several lines (whose indentation is
// its text), rather than emit a broken file.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const ENTRY = path.join(ROOT, 'src/browser/rawsse.ts')
const OUT = path.join(ROOT, 'dist/browser/rawsse-client.js')
export const MAX_BYTES = 16 * 1024

/** Each module once, after the modules it imports. */
function ordered(file, seen = new Set(), out = []) {
  if (seen.has(file)) return out
  seen.add(file)
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2020, true)
  for (const s of source.statements) {
    if (!ts.isImportDeclaration(s) && !(ts.isExportDeclaration(s) && s.moduleSpecifier)) continue
    const spec = s.moduleSpecifier.text
    if (!spec.startsWith('.')) throw new Error(`${file}: import of ${spec}: the browser client imports nothing outside src/`)
    ordered(path.resolve(path.dirname(file), spec.replace(/\.js$/, '.ts')), seen, out)
  }
  out.push(file)
  return out
}

/** The module as ES2020 JavaScript without comments, its imports dropped, `export` kept only for the entry. */
function joined(file, names) {
  const js = ts.transpileModule(readFileSync(file, 'utf8'), {
    compilerOptions: { target: ts.ScriptTarget.ES2020, module: ts.ModuleKind.ES2020, removeComments: true, verbatimModuleSyntax: false },
    fileName: file,
  }).outputText
  const source = ts.createSourceFile(file, js, ts.ScriptTarget.ES2020, true)
  const pieces = []
  for (const s of source.statements) {
    if (ts.isImportDeclaration(s)) {
      const bindings = s.importClause?.namedBindings
      if (s.importClause?.name || !bindings || !ts.isNamedImports(bindings) || bindings.elements.some((e) => e.propertyName)) {
        throw new Error(`${file}: only \`import { a, b } from './x.js'\` can be joined: ${s.getText()}`)
      }
      continue
    }
    if (ts.isExportDeclaration(s)) {
      if (file !== ENTRY) continue
      throw new Error(`${file}: export lists are not joined: ${s.getText()}`)
    }
    for (const name of declared(s)) {
      if (names.has(name)) throw new Error(`${file}: ${name} is also declared in ${names.get(name)}; the joined file would have it twice`)
      names.set(name, path.relative(ROOT, file))
    }
    let t = s.getText()
    if (file !== ENTRY) t = t.replace(/^export /, '')
    pieces.push({ names: file === ENTRY ? [] : declared(s), text: tight(t) + '\n' })
  }
  ts.forEachChild(source, function check(node) {
    if ((ts.isTemplateLiteralToken(node) || ts.isTemplateMiddleOrTemplateTail(node)) && node.getText().includes('\n')) {
      throw new Error(`${file}: a template literal over several lines; its indentation would be lost`)
    }
    ts.forEachChild(node, check)
  })
  return pieces
}

const K = ts.SyntaxKind
/** After these a `/` divides; anywhere else it starts a regular expression. */
const ENDS_OPERAND = new Set([K.Identifier, K.CloseParenToken, K.CloseBracketToken, K.CloseBraceToken, K.NumericLiteral, K.StringLiteral, K.NoSubstitutionTemplateLiteral, K.TemplateTail, K.RegularExpressionLiteral, K.ThisKeyword, K.SuperKeyword, K.TrueKeyword, K.FalseKeyword, K.NullKeyword, K.PlusPlusToken, K.MinusMinusToken])
/** The syntax tree of a text as a string of node kinds, operators and names: what it means, not how it is laid out. */
function shape(text) {
  const parts = []
  ts.forEachChild(ts.createSourceFile('x.js', text, ts.ScriptTarget.ES2020, true, ts.ScriptKind.JS), function walk(node) {
    parts.push(node.kind, node.operator ?? '', node.text ?? '')
    ts.forEachChild(node, walk)
  })
  return parts.join(' ')
}

/**
 * One statement with only the spaces JavaScript needs: between two words (`const x`, `return this`)
 * and between signs that would fuse (`a - -b`), and a line a statement (TypeScript ends each with
 * `;` or `}`, so no line break is there for semicolon insertion). Strings, templates and regular
 * expressions are tokens and keep their text. Checked: the result must parse to the same tree.
 */
function tight(text) {
  const scanner = ts.createScanner(ts.ScriptTarget.ES2020, false, ts.LanguageVariant.Standard, text)
  /** Brace depth inside each open template substitution. */
  const templates = []
  let out = ''
  let prev = K.Unknown
  let newline = false
  for (let k = scanner.scan(); k !== K.EndOfFileToken; k = scanner.scan()) {
    if (k === K.NewLineTrivia) newline = out !== ''
    if (k === K.NewLineTrivia || k === K.WhitespaceTrivia) continue
    if ((k === K.SlashToken || k === K.SlashEqualsToken) && !ENDS_OPERAND.has(prev)) k = scanner.reScanSlashToken()
    const depth = templates.length - 1
    if (k === K.OpenBraceToken && depth >= 0) templates[depth]++
    if (k === K.CloseBraceToken && depth >= 0 && templates[depth]-- === 0) {
      k = scanner.reScanTemplateToken(false)
      if (k === K.TemplateTail) templates.pop()
      else templates[depth] = 0
    }
    if (k === K.TemplateHead) templates.push(0)
    const token = scanner.getTokenText()
    const a = out[out.length - 1] ?? ''
    const b = token[0]
    // A line break after a statement or a block stays; one after `if (…)`, `{` or `else` is joined.
    if (newline && (a === ';' || a === '}')) out += '\n'
    else if ((/[\w$]/.test(a) && /[\w$]/.test(b)) || ((a === '+' || a === '-' || a === '/') && a === b) || (/\d/.test(a) && b === '.')) out += ' '
    out += token
    newline = false
    prev = k
  }
  if (shape(out) !== shape(text)) throw new Error(`tightening changed what a statement means:\n${text}\n→\n${out}`)
  return out
}

/**
 * Drop what no other statement names: src/wire.ts is shared with the server, and the page needs a
 * few of its constants, not its HTTP helpers. Repeated, since a dropped function may have been
 * the last to name another.
 */
function used(pieces) {
  for (;;) {
    const all = pieces.map((p) => p.text).join('')
    const unused = (p) => p.names.length > 0 && p.names.every((n) => all.split(new RegExp(`\\b${n}\\b`)).length - 1 === (p.text.split(new RegExp(`\\b${n}\\b`)).length - 1))
    const kept = pieces.filter((p) => !unused(p))
    if (kept.length === pieces.length) return pieces
    pieces = kept
  }
}

function declared(s) {
  if (ts.isVariableStatement(s)) return s.declarationList.declarations.map((d) => d.name.getText())
  if ((ts.isFunctionDeclaration(s) || ts.isClassDeclaration(s)) && s.name) return [s.name.text]
  return []
}

const names = new Map()
let out = '// rawsse\'s browser client, built from src/browser/ by src/bundle-browser.mjs. docs/client.md\n'
const pieces = ordered(ENTRY).flatMap((file) => [{ names: [], text: `// ${path.relative(path.join(ROOT, 'src'), file)}\n` }, ...joined(file, names)])
for (const p of used(pieces)) out += p.text
mkdirSync(path.dirname(OUT), { recursive: true })
writeFileSync(OUT, out)
process.stdout.write(`${path.relative(ROOT, OUT)}: ${Buffer.byteLength(out)} bytes\n`)
