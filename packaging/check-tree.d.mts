// Types of check-tree.mjs, for the tests that call it.
export interface TreeFile {
  /** Its path in the tree, from /. */
  path: string;
  machine: string;
  interpreter: string | null;
  needed: string[];
}

export function checkTree(root: string): Promise<{ files: TreeFile[]; problems: string[] }>;
