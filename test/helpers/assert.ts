// Assertion helpers shared by test files.
/** What a promise rejects with, when `is` recognises it; fails the test when it resolves or rejects otherwise. */
export async function rejectionOf<E>(p: Promise<unknown>, is: (err: unknown) => err is E): Promise<E> {
  try {
    await p;
  } catch (err) {
    if (is(err)) return err;
    throw err;
  }
  throw new Error("expected the call to fail");
}
