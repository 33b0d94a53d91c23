// One widget per interaction type (docs/api.md, "Interaction types"). Each draws the item into
// a fieldset and calls `answer(response)` with the response in the shape the server expects;
// null clears it. Typing is sent after a pause (and on leaving the field), never per keystroke.

const TYPING_PAUSE_MS = 700;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children);
  return node;
}

function debounced(send) {
  let timer = 0;
  let last;
  const flush = () => { clearTimeout(timer); timer = 0; if (last !== undefined) { send(last.value); last = undefined; } };
  return {
    later(value) { last = { value }; clearTimeout(timer); timer = setTimeout(flush, TYPING_PAUSE_MS); },
    flush,
  };
}

// The prompt with its markers ("{}" or "{G1}") replaced by controls, as text nodes (never HTML).
function promptWith(prompt, marker, control) {
  const p = el("span", { class: "inline-prompt" });
  let rest = prompt;
  for (;;) {
    const match = marker.exec(rest);
    if (!match) break;
    p.append(rest.slice(0, match.index), control(match[1]));
    rest = rest.slice(match.index + match[0].length);
  }
  p.append(rest);
  return p;
}

const widgets = {
  choice(item, response, answer, name) {
    const chosen = Array.isArray(response) ? response : response ? [response] : [];
    const single = item.max_choices === 1;
    const legend = single ? "Choose one" : item.max_choices ? `Choose up to ${item.max_choices}` : "Choose all that apply";
    const inputs = item.choices.map((choice) => {
      const input = el("input", { type: single ? "radio" : "checkbox", name, value: choice.identifier });
      input.checked = chosen.includes(choice.identifier);
      input.addEventListener("change", () => {
        const picked = inputs.filter((i) => i.checked).map((i) => i.value).sort();
        answer(picked.length ? picked : null);
      });
      return input;
    });
    return { legend, parts: item.choices.map((choice, n) => el("label", {}, inputs[n], choice.text)) };
  },

  inline_choice(item, response, answer, name) {
    const select = el("select", { name, "aria-label": "your answer" },
      el("option", { value: "", text: "—" }),
      ...item.choices.map((c) => el("option", { value: c.identifier, text: c.text })));
    select.value = response ?? "";
    select.addEventListener("change", () => answer(select.value || null));
    return { legend: "Complete the sentence", prompt: promptWith(item.prompt, /\{\}/, () => select), parts: [] };
  },

  text_entry(item, response, answer, name) {
    const input = el("input", { type: "text", name, maxlength: item.max_length, autocomplete: "off", spellcheck: "false", "aria-label": "your answer" });
    input.value = response ?? "";
    const send = debounced((value) => answer(value.trim() ? value : null));
    input.addEventListener("input", () => send.later(input.value));
    input.addEventListener("change", () => send.flush());
    return { legend: "Type your answer", parts: [input], flush: send.flush };
  },

  numeric(item, response, answer, name) {
    const input = el("input", { type: "text", inputmode: "decimal", name, autocomplete: "off", "aria-label": "your answer (a number)" });
    input.value = response ?? "";
    const send = debounced((value) => answer(value.trim() ? value.trim() : null));
    input.addEventListener("input", () => send.later(input.value));
    input.addEventListener("change", () => send.flush());
    return { legend: "Enter a number", parts: [input], flush: send.flush };
  },

  extended_text(item, response, answer, name) {
    const area = el("textarea", { name, rows: 10, maxlength: item.max_length, "aria-label": "your answer" });
    area.value = response ?? "";
    const count = el("p", { class: "count", "aria-live": "off" });
    const counted = () => {
      count.textContent = `${area.value.length} characters${item.expected_length ? ` (about ${item.expected_length} expected)` : ""}`;
    };
    counted();
    const send = debounced((value) => answer(value.trim() ? value : null));
    area.addEventListener("input", () => { counted(); send.later(area.value); });
    area.addEventListener("change", () => send.flush());
    return { legend: "Write your answer", parts: [area, count], flush: send.flush };
  },

  order(item, response, answer) {
    const byId = new Map(item.choices.map((c) => [c.identifier, c]));
    let order = Array.isArray(response) && response.length === item.choices.length ? [...response] : item.choices.map((c) => c.identifier);
    const list = el("ol", { class: "order" });
    const draw = (focus) => {
      list.replaceChildren(...order.map((id, n) => {
        const up = el("button", { type: "button", "aria-label": `Move "${byId.get(id).text}" up`, text: "↑", disabled: n === 0 });
        const down = el("button", { type: "button", "aria-label": `Move "${byId.get(id).text}" down`, text: "↓", disabled: n === order.length - 1 });
        up.addEventListener("click", () => move(n, -1, "up"));
        down.addEventListener("click", () => move(n, 1, "down"));
        return el("li", { "data-id": id }, el("span", { text: byId.get(id).text }), up, down);
      }));
      if (focus) list.querySelector(`li[data-id="${focus.id}"] button[aria-label^="Move"][aria-label$="${focus.dir}"]`)?.focus();
    };
    const move = (n, step, dir) => {
      const id = order[n];
      order.splice(n, 1);
      order.splice(n + step, 0, id);
      draw({ id, dir });
      answer([...order]);
    };
    const keep = el("button", { type: "button", class: "keep", text: "Keep this order" });
    keep.addEventListener("click", () => answer([...order]));
    draw();
    return { legend: "Put these in order", parts: [list, keep] };
  },

  match(item, response, answer, name) {
    const pairs = new Set((Array.isArray(response) ? response : []).map(([s, t]) => `${s} ${t}`));
    const boxes = [];
    const table = el("table", { class: "match" },
      el("thead", {}, el("tr", {}, el("td"), ...item.targets.map((t) => el("th", { scope: "col", text: t.text })))),
      el("tbody", {}, ...item.sources.map((s) => el("tr", {}, el("th", { scope: "row", text: s.text }),
        ...item.targets.map((t) => {
          const box = el("input", { type: "checkbox", name, value: `${s.identifier} ${t.identifier}`, "aria-label": `${s.text} matches ${t.text}` });
          box.checked = pairs.has(box.value);
          box.addEventListener("change", () => {
            const chosen = boxes.filter((b) => b.checked).map((b) => b.value.split(" "));
            answer(chosen.length ? chosen : null);
          });
          boxes.push(box);
          return el("td", {}, box);
        })))));
    return { legend: "Match each item on the left with the right column", parts: [table] };
  },

  gap_match(item, response, answer, name) {
    const placed = new Map((Array.isArray(response) ? response : []).map(([text, gap]) => [gap, text]));
    const selects = [];
    const control = (gap) => {
      const select = el("select", { name: `${name}-${gap}`, "data-gap": gap, "aria-label": `gap ${gap}` },
        el("option", { value: "", text: "—" }),
        ...item.gap_texts.map((g) => el("option", { value: g.identifier, text: g.text })));
      select.value = placed.get(gap) ?? "";
      select.addEventListener("change", () => {
        const chosen = selects.filter((s) => s.value).map((s) => [s.value, s.dataset.gap]);
        answer(chosen.length ? chosen : null);
      });
      selects.push(select);
      return select;
    };
    return { legend: "Fill the gaps", prompt: promptWith(item.prompt, /\{([A-Za-z_][\w.-]*)\}/, control), parts: [] };
  },
};

// Draw `item` into `fieldset` (whose first child is its legend); returns a `flush` that sends
// any typing still waiting (call it before moving to another item).
export function renderInteraction({ fieldset, legend, promptEl, item, response, answer, locked }) {
  const widget = widgets[item.type] ?? widgets.choice;
  const drawn = widget(item, response, answer, `item-${item.item_id}`);
  legend.textContent = locked ? `${drawn.legend} (your answer is final)` : drawn.legend;
  // A prompt with controls in it goes inside the fieldset, so locking disables them too.
  promptEl.replaceChildren(drawn.prompt ? "" : item.prompt);
  promptEl.hidden = Boolean(drawn.prompt);
  fieldset.replaceChildren(legend, ...(drawn.prompt ? [drawn.prompt] : []), ...drawn.parts);
  fieldset.disabled = Boolean(locked);
  return drawn.flush ?? (() => {});
}

export const TYPES = Object.keys(widgets);
