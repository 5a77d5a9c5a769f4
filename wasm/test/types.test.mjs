// The hand-written declarations (js/*.d.ts) against the real module: every
// class, member and function they declare exists at run time, and every
// public name at run time is declared (bar the plumbing listed below), so a
// method added or renamed without its declaration fails here. The string
// unions that name what the Rust side produces (error codes, rejection
// reasons, ...) are compared with the Rust source. `npm run test:types`
// checks the declarations' types themselves (test/types/usage.ts).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import ts from 'typescript'
import * as node from 'merkle-clock-wasm'
import * as web from '../js/web.js'
import * as blockstore from 'merkle-clock-wasm/blockstore'

const js = new URL('../js/', import.meta.url)
const wasmSrc = new URL('../src/', import.meta.url)
const coreSrc = new URL('../../src/', import.meta.url)
const generated = createRequire(import.meta.url)('../pkg/node/merkle_clock_wasm.js')

/**
 * Public at run time, not API, so not declared (wasm/README.md says so).
 * Each name here must exist (a stale entry fails) and must not be declared.
 */
const PLUMBING = {
  // The generated module's exports that the entry points do not re-export:
  // the staging buffer of `append` (src/staging.rs).
  functions: ['stagingReserve', 'stagingLength', 'takeParked', 'wasmMemory'],
  Replica: {
    // The staged path of `append` (js/api.js calls it).
    instance: ['appendStaged'],
    // The encoded form under `Replica.signedEvent` (js/api.js calls it); the
    // README documents `signedEvent` only.
    static: ['signedEventEncoded']
  },
  SyncDriver: { instance: [], static: [] }
}

/** What every class has, and wasm-bindgen's internals (`__wrap`, `__destroy_into_raw`). */
const builtinStatic = (name) => ['length', 'name', 'prototype'].includes(name) || name.startsWith('__')
const builtinInstance = (name) => name === 'constructor' || name.startsWith('__')

const hasModifier = (node, kind) => (ts.getModifiers(node) ?? []).some((m) => m.kind === kind)

/**
 * The values a declaration file exports: `{functions: Set, classes: Map(name →
 * {static, instance, properties})}` (properties: name → readonly), following `export * from` and
 * `export {…} from` into sibling declaration files. Type-only exports
 * (interfaces, type aliases, `export type`) have no run-time counterpart.
 */
function declared (file) {
  const source = ts.createSourceFile(file, readFileSync(new URL(file, js), 'utf8'), ts.ScriptTarget.Latest, true)
  const out = { functions: new Set(), classes: new Map(), source }
  const merge = (from, names) => {
    for (const f of from.functions) if (!names || names.has(f)) out.functions.add(f)
    for (const [c, members] of from.classes) if (!names || names.has(c)) out.classes.set(c, members)
  }
  for (const s of source.statements) {
    if (ts.isFunctionDeclaration(s) && hasModifier(s, ts.SyntaxKind.ExportKeyword)) {
      out.functions.add(s.name.text)
    } else if (ts.isClassDeclaration(s) && hasModifier(s, ts.SyntaxKind.ExportKeyword)) {
      const members = { static: new Set(), instance: new Set(), properties: new Map() }
      for (const m of s.members) {
        if (ts.isConstructorDeclaration(m) || hasModifier(m, ts.SyntaxKind.PrivateKeyword)) continue
        assert.ok(m.name && ts.isIdentifier(m.name), `${file}: ${s.name.text} declares a member by a computed name`)
        const name = m.name.text
        if (hasModifier(m, ts.SyntaxKind.StaticKeyword)) {
          assert.ok(ts.isMethodDeclaration(m), `${file}: static ${name} is not a method`)
          members.static.add(name)
        } else if (ts.isMethodDeclaration(m)) {
          members.instance.add(name)
        } else {
          // name → whether it is declared readonly
          members.properties.set(name, hasModifier(m, ts.SyntaxKind.ReadonlyKeyword))
        }
      }
      out.classes.set(s.name.text, members)
    } else if (ts.isVariableStatement(s) && hasModifier(s, ts.SyntaxKind.ExportKeyword)) {
      assert.fail(`${file}: exports a variable; this test knows functions and classes`)
    } else if (ts.isExportDeclaration(s) && !s.isTypeOnly && s.moduleSpecifier) {
      const from = declared(s.moduleSpecifier.text.replace(/^\.\//, '').replace(/\.js$/, '.d.ts'))
      const names = s.exportClause && new Set(s.exportClause.elements.filter((e) => !e.isTypeOnly).map((e) => e.name.text))
      merge(from, names)
    }
  }
  return out
}

const ENTRIES = [
  ['index.d.ts', node, 'js/node.js'],
  ['web.d.ts', web, 'js/web.js'],
  ['blockstore.d.ts', blockstore, 'js/blockstore.js']
]

for (const [file, module, runtime] of ENTRIES) {
  test(`${file}: every declared function, class and member exists in ${runtime}`, () => {
    const d = declared(file)
    for (const f of d.functions) assert.equal(typeof module[f], 'function', `${f} is declared but not a function`)
    for (const [name, members] of d.classes) {
      const cls = module[name]
      assert.equal(typeof cls, 'function', `class ${name} is declared but not exported`)
      for (const m of members.static) assert.equal(typeof cls[m], 'function', `${name}.${m} is declared but missing`)
      for (const m of members.instance) {
        assert.equal(typeof cls.prototype[m], 'function', `${name}.prototype.${m} is declared but missing`)
      }
      for (const [p, readonly] of members.properties) {
        const { get, set } = Object.getOwnPropertyDescriptor(cls.prototype, p) ?? {}
        assert.equal(typeof get, 'function', `${name}#${p} is declared but has no getter`)
        assert.equal(readonly, set === undefined, `${name}#${p}: declared readonly if and only if it has no setter`)
      }
    }
  })

  test(`${file}: everything ${runtime} exports is declared, with every public member`, () => {
    const d = declared(file)
    for (const name of Object.keys(module)) {
      assert.ok(d.functions.has(name) || d.classes.has(name), `${runtime} exports ${name}, which ${file} does not declare`)
    }
    for (const [name, members] of d.classes) {
      const cls = module[name]
      const plumbing = PLUMBING[name]
      assert.ok(plumbing, `add ${name} to PLUMBING (with empty lists if it has none)`)
      for (const m of Object.getOwnPropertyNames(cls).filter((n) => !builtinStatic(n))) {
        assert.ok(members.static.has(m) || plumbing.static.includes(m), `${name}.${m} exists but is not declared`)
      }
      for (const m of Object.getOwnPropertyNames(cls.prototype).filter((n) => !builtinInstance(n))) {
        assert.ok(
          members.instance.has(m) || members.properties.has(m) || plumbing.instance.includes(m),
          `${name}.prototype.${m} exists but is not declared`
        )
      }
    }
  })
}

test('the plumbing exists, and is neither declared nor exported by the entry points', () => {
  const d = declared('web.d.ts')
  for (const f of PLUMBING.functions) {
    assert.equal(typeof generated[f], 'function', `PLUMBING names ${f}, which the generated module has not`)
    assert.ok(!d.functions.has(f) && !(f in node) && !(f in web), `${f} is plumbing but public`)
  }
  for (const [name, { static: statics, instance }] of Object.entries(PLUMBING).filter(([k]) => k !== 'functions')) {
    const members = d.classes.get(name)
    for (const m of statics) {
      assert.equal(typeof node[name][m], 'function', `PLUMBING names ${name}.${m}, which does not exist`)
      assert.ok(!members.static.has(m), `${name}.${m} is plumbing but declared`)
    }
    for (const m of instance) {
      assert.equal(typeof node[name].prototype[m], 'function', `PLUMBING names ${name}.prototype.${m}, which does not exist`)
      assert.ok(!members.instance.has(m), `${name}.prototype.${m} is plumbing but declared`)
    }
  }
})

test('every export of the generated module is re-exported by the entry points or is plumbing', () => {
  for (const name of Object.keys(generated)) {
    assert.ok(
      (name in node && name in web) || PLUMBING.functions.includes(name),
      `the wasm module exports ${name}: re-export and declare it (js/node.js, js/web.js, js/index.d.ts) or list it as plumbing`
    )
  }
})

/** The string literals of the type alias `name` in index.d.ts (following aliases it names). */
function literals (name) {
  const { source } = declared('index.d.ts')
  const aliases = new Map(source.statements.filter(ts.isTypeAliasDeclaration).map((s) => [s.name.text, s.type]))
  const out = new Set()
  const walk = (type) => {
    if (ts.isUnionTypeNode(type)) type.types.forEach(walk)
    else if (ts.isLiteralTypeNode(type) && ts.isStringLiteral(type.literal)) out.add(type.literal.text)
    else if (ts.isTypeReferenceNode(type) && aliases.has(type.typeName.text)) walk(aliases.get(type.typeName.text))
    else assert.fail(`${name}: ${type.getText(source)} is not a string literal`)
  }
  assert.ok(aliases.has(name), `index.d.ts declares no type ${name}`)
  walk(aliases.get(name))
  return out
}

/** Every first capture of `pattern` in these files' text. */
function captures (files, pattern) {
  const out = new Set()
  for (const file of files) for (const m of readFileSync(file, 'utf8').matchAll(pattern)) out.add(m[1])
  return out
}

const sorted = (set) => [...set].sort()
const rust = (dir, ...names) => names.map((n) => new URL(n, dir))

test('ErrorCode names every code the wasm layer and the JS side throw', () => {
  const sources = readdirSync(wasmSrc)
    .filter((f) => f.endsWith('.rs') && f !== 'testing.rs') // testing.rs: the `testing` feature's contract suite
    .map((f) => new URL(f, wasmSrc))
  const thrown = captures(sources, /\berror\(\s*"([a-z_]+)"/g)
  for (const c of captures(readdirSync(js).filter((f) => f.endsWith('.js')).map((f) => new URL(f, js)), /merkleClockError\(\s*'([a-z_]+)'/g)) {
    thrown.add(c)
  }
  // The catch-all arm of `append_error` (src/replica.rs) for AppendError
  // variants a later core may add: unreachable with this core.
  assert.ok(thrown.delete('append'), 'the catch-all "append" code is gone: drop this line')
  assert.deepEqual(sorted(literals('ErrorCode')), sorted(thrown))
})

test('RejectReason names every reason the core gives a rejection the JS API can see', () => {
  const reasons = captures(rust(coreSrc, 'replica/outcome.rs'), /RejectReason::\w+ => "([a-z_]+)"/g)
  // Validators cannot be set from JS (the wasm layer opens replicas with
  // `ReplicaConfig::default()`), so no rejection has reason `validator`.
  assert.ok(reasons.delete('validator'))
  assert.deepEqual(sorted(literals('RejectReason')), sorted(reasons))
})

test('AuthKind, RestartReason and ClockOrder name what the Rust side produces', () => {
  // keys.rs's `_ => "auth"` arm (a kind a later core may add) does not match.
  assert.deepEqual(sorted(literals('AuthKind')), sorted(captures(rust(wasmSrc, 'keys.rs'), /AuthError::\w+ \{ \.\. \} => "([a-z_]+)"/g)))
  assert.deepEqual(sorted(literals('RestartReason')), sorted(captures(rust(coreSrc, 'sync/driver.rs'), /Restart::\w+ => "([a-z-]+)"/g)))
  assert.deepEqual(sorted(literals('ClockOrder')), sorted(captures(rust(wasmSrc, 'replica.rs'), /ClockOrder::\w+ => "([a-z]+)"/g)))
})
