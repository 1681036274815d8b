/**
 * Child process for tls.test.ts: the real npm netlicensing-client 1.2.40
 * (axios underneath) validates one licensee and prints one JSON line:
 * {"ok":true,"validators":{…}} or {"ok":false,"code":…,"message":…}.
 * Run as a separate process so that NODE_EXTRA_CA_CERTS — read once at
 * start-up — makes it trust the test CA, exactly as an operator would.
 * Usage: bun nlic-validate.ts <baseUrl> <licensee> <apiKey> [moduleNumber sessionId]
 */
import NL from 'netlicensing-client';

const [baseUrl, licensee, apiKey, moduleNumber, sessionId] = process.argv.slice(2);
const context = new NL.Context({ baseUrl, securityMode: NL.Constants.APIKEY_IDENTIFICATION, apiKey });
const parameters = new NL.ValidationParameters();
if (moduleNumber && sessionId) parameters.setProductModuleValidationParameters(moduleNumber, { sessionId, action: 'checkOut' });
try {
  const result = await NL.LicenseeService.validate(context, licensee, parameters);
  console.log(JSON.stringify({ ok: true, validators: result.getValidators() }));
} catch (error) {
  const e = error as { code?: string; message?: string; response?: { status?: number } };
  console.log(JSON.stringify({ ok: false, code: e.code ?? e.response?.status ?? null, message: e.message ?? String(error) }));
}
