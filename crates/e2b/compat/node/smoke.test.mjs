// E2B's JavaScript SDK against firepit's E2B endpoint: create, run, write, read, kill.
// The endpoint and key come from E2B's own settings (E2B_API_URL, E2B_SANDBOX_URL, E2B_DOMAIN,
// E2B_API_KEY), which scripts/test points at a local `firepit serve --e2b`: never the internet.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Sandbox, CommandExitError } from 'e2b'

for (const name of ['E2B_API_URL', 'E2B_SANDBOX_URL']) {
  assert.ok(process.env[name]?.startsWith('http://127.'), `${name} must point at this machine (127.x)`)
}

test('create, run, write, read, kill', async () => {
  const sandbox = await Sandbox.create({ timeoutMs: 120_000, metadata: { from: 'node' } })
  try {
    const result = await sandbox.commands.run('echo "from node"; whoami')
    assert.equal(result.exitCode, 0)
    assert.equal(result.stdout, 'from node\nuser\n')
    await assert.rejects(sandbox.commands.run('exit 5'), (error) => error instanceof CommandExitError && error.exitCode === 5)
    const info = await sandbox.files.write('node/hello.txt', 'hello from node')
    assert.equal(info.path, '/home/user/node/hello.txt')
    assert.equal(await sandbox.files.read('node/hello.txt'), 'hello from node')
    const entries = await sandbox.files.list('node')
    assert.deepEqual(entries.map((entry) => entry.name), ['hello.txt'])
    assert.equal((await Sandbox.getInfo(sandbox.sandboxId)).metadata.from, 'node')
  } finally {
    assert.equal(await sandbox.kill(), true)
  }
  assert.equal(await sandbox.isRunning(), false)
})
