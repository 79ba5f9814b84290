// The viewer's toolbar groups its tools in drop-down menus: these open the group of a control
// before using it, as a person would (the controls keep their ids: #tool-*, #act-*, #preset…).

/** The control `sel`, visible: its group's menu opened first when it sits in a closed one. */
export async function reveal(page, sel) {
  const el = page.locator(sel);
  if (await el.isVisible()) return el;
  const group = await el.evaluate((e) => e.closest("[data-menu]")?.dataset.menu);
  if (group) await page.click(`[data-menu-open="${group}"]`);
  await el.waitFor({ state: "visible" });
  return el;
}

/** Click a toolbar control (opening its menu if need be; the menu closes on the choice). */
export const press = async (page, sel) => (await reveal(page, sel)).click();

/** Pick `value` in a toolbar drop-down list (opening its menu if need be). */
export const choose = async (page, sel, value) => (await reveal(page, sel)).selectOption(value);
