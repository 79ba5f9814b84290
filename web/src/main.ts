// Entry: who is signed in (else to /login), then the study list at / or the viewer at /viewer.

import "./style.css";
import { getJSON } from "./api";
import { lang, setLang, translate } from "./i18n";
import { studyList } from "./list";
import { mark, startViewerLoad } from "./loader";

async function start(): Promise<void> {
  translate();
  // viewer: its code, data and a preview of the first image load in parallel with the sign-in check
  const viewerCode = location.pathname.startsWith("/viewer") ? import("./viewer") : null;
  if (viewerCode) startViewerLoad(document.getElementById("main")!);
  const langBtn = document.getElementById("lang")!;
  const label = () => { langBtn.textContent = lang() === "zh" ? "English" : "中文"; };
  label();
  langBtn.addEventListener("click", () => { setLang(lang() === "zh" ? "en" : "zh"); label(); });
  const me = await getJSON<{ username: string; display_name: string }>("/api/auth/me");
  document.getElementById("who")!.textContent = me.display_name || me.username;
  document.getElementById("logout")!.addEventListener("click", async () => {
    await fetch("/api/auth/logout", { method: "POST", credentials: "same-origin" });
    location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
  });
  const main = document.getElementById("main")!;
  if (location.pathname.startsWith("/viewer")) {
    // Cornerstone (~1.2 MB gzip) only loads on the viewer page
    const { viewer } = await viewerCode!;
    mark("code");
    await viewer(main);
  } else if (location.pathname.startsWith("/report")) {
    const { reportPage } = await import("./report");
    await reportPage(main);
  } else {
    studyList(main);
  }
}

start().catch((e: unknown) => {
  if ((e as { status?: number }).status === 401) return; // on the way to /login
  console.error(e);
  const main = document.getElementById("main");
  if (main) main.textContent = String((e as Error).message || e);
});
