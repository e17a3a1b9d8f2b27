import React from "react";

export interface ButtonProps { label: string; }

export function Button({ label }: ButtonProps) {
  return <button>{label}</button>;
}

export class Panel extends React.Component {
  render() { return <div />; }
}
