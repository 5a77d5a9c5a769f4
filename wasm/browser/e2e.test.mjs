// End to end in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): a page served from 127.0.0.1 by a tiny static server runs
// two replicas that append concurrently and sync through a MessageChannel;
// both must end with the same heads and order. And a replica on IndexedDB
// that finds its stream again after a reload. Needs `bash wasm/build.sh`.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { chromium } from 'playwright-core'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' }

/** Serves wasm/ (the page at /): only files under it, nothing else. */
function serve () {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1')
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204).end()
      return
    }
    const rel = url.pathname === '/' ? 'browser/page.html' : decodeURIComponent(url.pathname).slice(1)
    const file = path.resolve(root, rel)
    if (!file.startsWith(root + path.sep)) {
      res.writeHead(403).end()
      return
    }
    try {
      const body = await readFile(file)
      res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' }).end(body)
    } catch {
      res.writeHead(404).end()
    }
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)))
}

/**
 * Headless Chromium. Started again if it dies while starting, before any
 * page exists (in CI it once crashed with SIGSEGV at launch, between two
 * tests): at most 3 tries. Only the launch is retried, never a test.
 */
async function launch () {
  for (let attempt = 1; ; attempt++) {
    try {
      return await chromium.launch({
        executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update']
      })
    } catch (e) {
      if (attempt === 3) throw e
      console.error(`chromium did not start (try ${attempt} of 3): ${String(e.message ?? e).split('\n')[0]}`)
    }
  }
}

/** Runs `body(browser, origin)` with Chromium and the server, then closes both. */
async function withBrowser (body) {
  const server = await serve()
  let browser
  try {
    browser = await launch()
    await body(browser, `http://127.0.0.1:${server.address().port}`)
  } finally {
    await browser?.close()
    server.close()
  }
}

/** window.result of the page once it is set. */
const resultOf = async (page) => {
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 60_000 })
  return page.evaluate(() => window.result)
}

test('a stream in IndexedDB survives a page reload: the same heads and events, appends continue', async () => {
  await withBrowser(async (browser, origin) => {
    const page = await browser.newPage()
    const errors = []
    page.on('pageerror', (e) => errors.push(String(e)))
    await page.goto(`${origin}/browser/reload.html`)
    const first = await resultOf(page)
    assert.equal(first.ok, true, first.error)
    assert.equal(first.found.length, 1, 'a new stream: the genesis only')
    assert.equal(first.after.length, 151)

    await page.reload()
    const second = await resultOf(page)
    assert.equal(second.ok, true, second.error)
    assert.deepEqual(second.found, first.after, 'reopened as it was before the reload')
    assert.equal(second.after.length, 301)
    assert.deepEqual(second.after.order.slice(0, 151), first.after.order)
    assert.deepEqual(errors, [])
  })
})

test('two replicas in Chromium append concurrently, sync over a MessageChannel, agree', async () => {
  await withBrowser(async (browser, origin) => {
    const page = await browser.newPage()
    const errors = []
    page.on('pageerror', (e) => errors.push(String(e)))
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })
    await page.goto(`${origin}/`)
    const result = await resultOf(page)
    assert.equal(result.ok, true, result.error)
    assert.deepEqual(errors, [])
    assert.equal(result.alice.length, 41)
    assert.equal(result.alice.heads.length, 2, 'two concurrent branches')
    assert.deepEqual(result.bob.heads, result.alice.heads)
    assert.deepEqual(result.bob.order, result.alice.order)
    assert.match(result.alice.heads[0], /^bafyr4i/)
    assert.equal(typeof result.lastPayload.i, 'number')
  })
})
