// A page that loads the classic-script build: window.DirectCall.
import type {} from "@directcall/web-sdk/global";

export async function classic(): Promise<void> {
  const client = await window.DirectCall.initDirectCall({
    accountId: "acct",
    apikey: "prefix.secret",
    cuid: "student_sam",
    clevertap: null,
  });
  await client.call("tutor_jane", "Student is calling");
  const version: string = DirectCall.version;
  console.log(version, window.DirectCall.ERR.INTERNET_LOST);
  window.addEventListener("directcall:error", (event) => console.log(event.detail.code));
}
