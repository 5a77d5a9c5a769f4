// The hand-written declarations (js/*.d.ts) against the real module: every
// class, member and function they declare exists at run time, and every
// public name at run time is declared (bar the plumbing listed below), so a
// method added or renamed without its declaration fails here. The string
// unions that name what the Rust side produces (error codes, rejection
// reasons, ...) are compared with the Rust source, and every result of the
// real module is checked against its declared type, field by field.
// `npm run test:types` checks the declarations as TypeScript sees them
// (test/types/usage.ts).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import ts from 'typescript'
import * as dagCbor from '@ipld/dag-cbor'
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

test('package.json points every entry at its declarations: a "types" condition first, beside each "default"', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  const targets = []
  const walk = (conditions) => {
    if (typeof conditions === 'string') assert.fail(`${conditions}: a bare path has no types; use {types, default}`)
    if ('default' in conditions && typeof conditions.default === 'string') {
      assert.equal(Object.keys(conditions)[0], 'types', `${JSON.stringify(conditions)}: "types" must come first`)
      targets.push([conditions.types, conditions.default])
    } else {
      Object.values(conditions).forEach(walk)
    }
  }
  Object.values(pkg.exports).forEach(walk)
  assert.deepEqual(targets.map(([types, js]) => [types.replace(/^\.\/js\//, ''), js]).sort(), ENTRIES.map(([d, , js]) => [d, `./${js}`]).sort())
  assert.ok(pkg.files.includes('js'), 'the declarations ship in js/')
})

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

// ---- The results' shapes: every value a method returns (or resolves to)
// fits the type declared for it, field by field, with no undeclared field.

/** index.d.ts's and blockstore.d.ts's declarations by name. */
const decls = new Map()
for (const file of ['index.d.ts', 'blockstore.d.ts']) {
  for (const s of declared(file).source.statements) if (s.name) decls.set(s.name.text, s)
}

/** The runtime classes the declarations name. */
const classes = { Replica: node.Replica, SyncDriver: node.SyncDriver }

/**
 * Why `value` does not fit the type node `type`, or `undefined`. Knows the
 * forms the declarations use for results; a form it does not know fails.
 */
function misfit (value, type, path) {
  const K = ts.SyntaxKind
  const expect = (ok, what) => (ok ? undefined : `${path}: ${describe(value)} is not ${what}`)
  switch (type.kind) {
    case K.StringKeyword: return expect(typeof value === 'string', 'a string')
    case K.NumberKeyword: return expect(typeof value === 'number', 'a number')
    case K.BooleanKeyword: return expect(typeof value === 'boolean', 'a boolean')
    case K.UndefinedKeyword: case K.VoidKeyword: return expect(value === undefined, 'undefined')
    case K.UnknownKeyword: return undefined
    case K.ParenthesizedType: return misfit(value, type.type, path)
    case K.LiteralType: {
      const l = type.literal
      if (l.kind === K.NullKeyword) return expect(value === null, 'null')
      if (l.kind === K.TrueKeyword || l.kind === K.FalseKeyword) return expect(value === (l.kind === K.TrueKeyword), l.getText())
      return expect(value === l.text, JSON.stringify(l.text))
    }
    case K.UnionType: {
      const whys = type.types.map((t) => misfit(value, t, path))
      return whys.includes(undefined) ? undefined : whys.join('; and ')
    }
    case K.ArrayType:
      return expect(Array.isArray(value), 'an array') ?? firstMisfit(value.map((v, i) => misfit(v, type.elementType, `${path}[${i}]`)))
    case K.TupleType:
      return expect(Array.isArray(value) && value.length === type.elements.length, type.getText()) ??
        firstMisfit(type.elements.map((t, i) => misfit(value[i], t, `${path}[${i}]`)))
    case K.TypeLiteral: return objectMisfit(value, type.members, path)
    case K.TypeReference: return referenceMisfit(value, type, path)
    default: return `${path}: this test does not know the type ${type.getText()}`
  }
}

const firstMisfit = (whys) => whys.find((w) => w !== undefined)
const describe = (v) => (v instanceof Uint8Array ? 'a Uint8Array' : typeof v === 'bigint' ? `${v}n` : JSON.stringify(v) ?? String(v))

function referenceMisfit (value, type, path) {
  const name = type.typeName.text
  const [arg0, arg1] = type.typeArguments ?? []
  switch (name) {
    case 'Uint8Array': return value instanceof Uint8Array ? undefined : `${path}: ${describe(value)} is not a Uint8Array`
    case 'Array': return misfit(value, ts.factory.createArrayTypeNode(arg0), path)
    case 'Payload': return undefined // payloads round-trip in replica.test.mjs and payload.test.mjs
    case 'Record':
      if (typeof value !== 'object' || value === null) return `${path}: not an object`
      return firstMisfit(Object.entries(value).map(([k, v]) => misfit(k, arg0, `${path} key`) ?? misfit(v, arg1, `${path}.${k}`)))
    case 'Exclude': return misfit(value, arg0, path) ?? (misfit(value, arg1, path) === undefined ? `${path}: ${describe(value)} is excluded` : undefined)
    case 'Required': return declMisfit(value, arg0.typeName.text, path, { required: true })
    default: return declMisfit(value, name, path)
  }
}

/** `value` against the declaration `name`: an interface, a type alias or a class. */
function declMisfit (value, name, path, { required = false } = {}) {
  const d = decls.get(name)
  if (!d) return `${path}: this test does not know the type ${name}`
  if (ts.isTypeAliasDeclaration(d)) return misfit(value, d.type, path)
  if (ts.isClassDeclaration(d)) return value instanceof classes[name] ? undefined : `${path}: not a ${name}`
  assert.ok(ts.isInterfaceDeclaration(d), name)
  const members = [...d.members]
  let error = false
  for (const h of d.heritageClauses ?? []) {
    for (const t of h.types) {
      if (t.expression.text === 'Error') error = true
      else members.push(...decls.get(t.expression.text).members)
    }
  }
  if (error && !(value instanceof Error)) return `${path}: not an Error`
  return objectMisfit(value, members, path, { required })
}

/** An object with these members (properties and methods), and no other own enumerable field. */
function objectMisfit (value, members, path, { required = false } = {}) {
  if (typeof value !== 'object' || value === null) return `${path}: ${describe(value)} is not an object`
  const names = new Set()
  for (const m of members) {
    const name = m.name.text
    names.add(name)
    const optional = m.questionToken !== undefined && !required
    if (!(name in value)) {
      if (optional) continue
      return `${path}: ${name} is missing`
    }
    const why = ts.isMethodSignature(m)
      ? (typeof value[name] === 'function' ? undefined : `${path}.${name} is not a function`)
      : misfit(value[name], m.type, `${path}.${name}`)
    if (why) return why
  }
  const extra = Object.keys(value).filter((k) => !names.has(k))
  return extra.length ? `${path}: ${extra.join(', ')} not declared` : undefined
}

/** The declared result type of `where`: `Class.method`, `Class#property`, `function` or a type's name; Promise<T> is T. */
function resultType (where) {
  const [, cls, sep, member] = where.match(/^(\w+)(?:([.#])(\w+))?$/)
  let type
  if (!sep) {
    const d = decls.get(cls)
    type = ts.isFunctionDeclaration(d) ? d.type : ts.factory.createTypeReferenceNode(cls)
  } else {
    const m = decls.get(cls).members.find((m) => m.name?.text === member && (sep === '#') === ts.isPropertyDeclaration(m))
    assert.ok(m, `${where} is not declared`)
    type = m.type
  }
  if (ts.isTypeReferenceNode(type) && type.typeName.text === 'Promise') type = type.typeArguments[0]
  return type
}

/** Which results the shape test checked, by `resultType` name. */
const checked = new Set()

/** Asserts that `value` (awaited) fits the result type of `where`, and gives it back. */
async function fits (where, value) {
  value = await value
  const why = misfit(value, resultType(where), where)
  assert.equal(why, undefined, why)
  checked.add(where)
  return value
}

test('every result fits its declared type, with no undeclared field', async () => {
  const { generateSecretKey, publicKey, cidOf } = node
  const Replica = node.Replica
  const genesis = await fits('Replica.genesis', Replica.genesis({ app: 'shapes' }))
  const r = await fits('Replica.create', Replica.create(genesis))
  await fits('Replica#streamId', r.streamId)
  await fits('Replica#length', r.length)
  await fits('Replica#signer', r.signer)
  const first = await fits('Replica.append', r.append({ n: 1 }))
  await fits('Replica.appendMany', r.appendMany([2, 'three']))
  await fits('Replica.appendEncoded', r.appendEncoded(new Uint8Array([0xf6])))
  await fits('Replica.appendManyEncoded', r.appendManyEncoded(new Uint8Array([0xf5, 0xf4]), new Uint32Array([1, 2])))
  await fits('Replica.heads', r.heads())
  await fits('Replica.order', r.order())
  await fits('Replica.missing', r.missing())
  await fits('Replica.has', r.has(first))
  await fits('Replica.pending', r.pending())
  await fits('Replica.compare', r.compare(first, r.heads()))
  await fits('Replica.get', r.get(first))
  await fits('Replica.get', r.get(cidOf(new Uint8Array([0xf6]))))
  const block = await fits('Replica.getBlock', r.getBlock(r.heads()[0]))
  await fits('Replica.getBlock', r.getBlock(cidOf(new Uint8Array([0xf6]))))
  await fits('Replica.policy', r.policy())
  await fits('Replica.members', r.members())
  await fits('Replica.membersAt', r.membersAt(first))
  await fits('Replica.writtenAfterRevocation', r.writtenAfterRevocation())
  await fits('Replica.genesisEncoded', Replica.genesisEncoded(new Uint8Array([0xa0])))

  // Every status of an ingest outcome, and rule rejections.
  const other = await Replica.create(genesis)
  await fits('AcceptedOutcome', (await Replica.create(genesis)).ingest(await r.getBlock(first)))
  const pending = await fits('PendingOutcome', other.ingest(block))
  assert.ok(pending.missing.length > 0)
  const blocks = await Promise.all(r.order().slice(1).map((c) => r.getBlock(c)))
  const report = await fits('Replica.ingestMany', other.ingestMany(blocks))
  assert.ok(report.outcomes.some((o) => o.status === 'accepted'))
  await fits('DuplicateOutcome', other.ingest(block, r.heads()[0]))
  await fits('RuleRejection', other.ingest(new Uint8Array([0xa1, 0x61, 0x78, 0x01])))
  await fits('RuleRejection', other.ingest(block, r.streamId))
  await fits('Replica.ingest', other.ingest(Replica.genesis('another stream')))
  const car = await fits('Replica.exportCar', r.exportCar())
  await fits('Replica.importCar', (await Replica.create(genesis)).importCar(car))

  // A signed stream: membership, authors, and each kind of authorship refusal.
  const adminKey = await fits('generateSecretKey', generateSecretKey())
  const writerKey = generateSecretKey()
  const admin = await fits('publicKey', publicKey(adminKey))
  const writer = publicKey(writerKey)
  const team = await Replica.create(Replica.genesis('team', { admins: [admin] }))
  team.setSigner(adminKey)
  await fits('Replica#signer', team.signer)
  const grant = await fits('Replica.grant', team.grant(writer))
  await fits('ReplicaEvent', team.get(grant))
  team.setSigner(writerKey)
  const note = await team.append('note')
  await fits('ReplicaEvent', team.get(note))
  team.setSigner(adminKey)
  const revocation = await fits('Replica.revoke', team.revoke(writer))
  await fits('ReplicaEvent', team.get(revocation))
  await fits('Replica.policy', team.policy())
  await fits('Members', team.members())
  await fits('Replica.membersAt', team.membersAt(note))
  const event = (key, payload) =>
    Replica.signedEvent({ stream: team.streamId, height: 4, parents: team.heads(), payload }, key)
  await fits('Replica.signedEvent', event(writerKey, 'late'))
  await fits('RevokedRejection', team.ingest(event(writerKey, 'late')))
  await fits('UnauthorizedRejection', team.ingest(event(generateSecretKey(), 'stranger')))
  const forged = event(adminKey, 'forged')
  forged.set(event(adminKey, 'honest').subarray(7, 71), 7) // another payload's signature (see auth.test.mjs)
  await fits('ForgedRejection', team.ingest(forged))
  const { sig, author, ...unsigned } = dagCbor.decode(event(writerKey, 'unsigned')) // the signature taken off
  assert.ok(sig && author)
  await fits('UnsignedRejection', team.ingest(dagCbor.encode(unsigned)))

  // Errors: a code, and for a refused append the refusal's fields.
  const error = async (promise) => { try { await promise } catch (e) { return e } assert.fail('no error') }
  await fits('MerkleClockFailure', error((async () => r.compare(cidOf(new Uint8Array([0xf6])), first))()))
  team.setSigner(writerKey)
  await fits('AppendRejectedError', error(team.append('after my revocation')))

  // The driver.
  const d = new node.SyncDriver(r, { seed: 1 })
  const e = new node.SyncDriver(other, { seed: 2 })
  await fits('SyncDriver.connect', d.connect('e', 0))
  e.connect('d', 0)
  const { messages } = await fits('SyncDriver.tick', d.tick(0))
  assert.ok(messages.length > 0)
  await fits('SyncDriver.receive', e.receive('d', messages[0].message, 0))
  await fits('SyncDriver.receive', e.receive('d', messages[0].message, 0))
  await fits('SyncDriver.settled', d.settled('e'))
  await fits('SyncDriver.peers', d.peers())
  await fits('SyncDriver.stats', d.stats())
  const durable = await fits('SyncDriver.disconnect', d.disconnect('e'))
  await fits('SyncDriver.disconnect', d.disconnect('nobody'))
  d.connectWith('e', durable, 1)
  d.lost('e', 2)
  const restarts = await fits('SyncDriver.tick', d.tick(100000))
  assert.ok(restarts.restarts.length > 0, 'a restart to check the shape of')

  // The store adapter, and opening on it.
  const { MemoryBlockstore } = await import('blockstore-core/memory')
  const store = await fits('blockstoreAdapter', node.blockstoreAdapter(new MemoryBlockstore()))
  const s = await fits('Replica.openOrCreate', Replica.openOrCreate(genesis, store))
  await fits('Replica.open', Replica.open(s.streamId, store))
  await fits('cidOf', cidOf(genesis))

  // Every declared result was checked (a method added to the declarations
  // needs a line here). Results that are void: nothing to check.
  const results = []
  for (const [name, d] of decls) {
    if (ts.isFunctionDeclaration(d) && d.type.kind !== ts.SyntaxKind.VoidKeyword) results.push(name)
    if (!ts.isClassDeclaration(d)) continue
    for (const m of d.members) {
      if (ts.isMethodDeclaration(m) && m.type.kind !== ts.SyntaxKind.VoidKeyword) results.push(`${name}.${m.name.text}`)
      if (ts.isPropertyDeclaration(m)) results.push(`${name}#${m.name.text}`)
    }
  }
  assert.deepEqual(results.filter((w) => !checked.has(w)), [], 'results whose shape no line checks')
})
