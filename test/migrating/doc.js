// The receiver code of docs/migrating.md, loaded from the page itself: the
// block that follows the marker <!-- migrating:<section> receiver --> is
// run as a function body and the named functions it declares are returned,
// so the test receivers verify with exactly the code the guide shows.
// require() inside that code resolves from test/receiver, where npm ci put
// the Standard Webhooks reference library.
'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const requireFromReceiver = createRequire(path.join(__dirname, '..', 'receiver', 'package.json'));

function loader(docPath) {
  const text = fs.readFileSync(docPath, 'utf8');
  return (section, names) => {
    const marker = `<!-- migrating:${section} receiver -->`;
    const at = text.indexOf(marker);
    if (at < 0) throw new Error(`${docPath} has no ${marker}`);
    const m = /^\s*```js\n([\s\S]*?)\n```/.exec(text.slice(at + marker.length));
    if (!m) throw new Error(`no js block after ${marker}`);
    // eslint-disable-next-line no-new-func
    const fns = new Function('require', `${m[1]}\nreturn { ${names.join(', ')} };`)(requireFromReceiver);
    for (const n of names) if (typeof fns[n] !== 'function') throw new Error(`${marker} does not define ${n}`);
    return fns;
  };
}

module.exports = { loader, requireFromReceiver };
