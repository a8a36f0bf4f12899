// import() from here, so that scripts elsewhere (tests/deploy) resolve the
// packages of tools/node_modules (tools/package.json) by their names.
export const importTool = (name) => import(name);
