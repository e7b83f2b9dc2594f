// Progressive enhancement only: the page is complete without this script.
(() => {
  "use strict";

  // Sort buttons on every column head of `table`; `rows` keep their first order on ties.
  function sortable(table, rows) {
    const body = table.tBodies[0];
    const headers = Array.from(table.tHead.rows[0].cells);
    const keyOf = (row, col) => {
      const cell = row.cells[col];
      return cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    };
    function sortBy(th, col) {
      const dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
      headers.forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", dir);
      const sign = dir === "ascending" ? 1 : -1;
      const numeric = th.dataset.type === "number";
      const sorted = rows.slice().sort((a, b) => {
        const x = keyOf(a, col);
        const y = keyOf(b, col);
        const c = numeric
          ? (parseFloat(x) || 0) - (parseFloat(y) || 0)
          : x.localeCompare(y, undefined, { numeric: true });
        return c * sign || a.dataset.order - b.dataset.order;
      });
      body.append(...sorted);
    }
    headers.forEach((th, col) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.title = "Sort by this column";
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      button.addEventListener("click", () => sortBy(th, col));
    });
  }

  function rowsOf(table) {
    const rows = Array.from(table.tBodies[0].rows);
    rows.forEach((row, i) => { row.dataset.order = String(i); });
    return rows;
  }

  const accounts = document.getElementById("accounts");
  if (accounts) sortable(accounts, rowsOf(accounts));

  const table = document.getElementById("items");
  const tools = document.getElementById("item-tools");
  if (!table || !tools) return;
  const rows = rowsOf(table);
  const count = document.getElementById("item-count");

  // One select per `data-filter` attribute of the rows (status, endpoint, kind).
  const filters = Array.from(tools.querySelectorAll("select[data-filter]")).map((select) => {
    const attr = select.dataset.filter;
    const values = [...new Set(rows.map((r) => r.dataset[attr]))].sort(
      (a, b) => a.localeCompare(b, undefined, { numeric: true }),
    );
    for (const v of values) select.add(new Option(v.replace(/_/g, " "), v));
    select.addEventListener("change", apply);
    return { select, attr };
  });

  function apply() {
    let shown = 0;
    for (const r of rows) {
      const hide = filters.some(({ select, attr }) =>
        select.value !== "" && r.dataset[attr] !== select.value);
      r.hidden = hide;
      if (!hide) shown += 1;
    }
    count.textContent = `${shown} of ${rows.length} rows shown`;
  }

  sortable(table, rows);
  tools.hidden = false;
  apply();
})();
